//! `vzpkg`: template caches. `vzpkg create cache <name>` builds `$TEMPLATE/cache/<name>.tar.gz`
//! (`busybox` from the host's busybox-static, no network; Debian names through debootstrap);
//! `vzpkg list` lists the caches.
#![allow(clippy::print_stdout, clippy::print_stderr, reason = "a command line program")]

use std::path::Path;
use std::process::ExitCode;

use vz_ctl::config::GlobalConfig;
use vz_template::{BusyboxBuilder, CacheStore, TemplateName};

/// The host's static busybox (Debian package busybox-static).
const BUSYBOX: &str = "/bin/busybox";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let words: Vec<&str> = args.iter().map(String::as_str).collect();
    let global = match GlobalConfig::load() {
        Ok(g) => g,
        Err(e) => {
            eprintln!("vzpkg: {e}");
            return ExitCode::from(10);
        }
    };
    vz_ctl::logging::init("vzpkg", 0, false, None, None);
    let Some(template_dir) = global.template_dir() else {
        eprintln!("vzpkg: TEMPLATE is not set in {}", global.path().display());
        return ExitCode::from(24);
    };
    let store = CacheStore::new(&template_dir);
    let outcome = match words.as_slice() {
        ["create", "cache", names @ ..] if !names.is_empty() => create_caches(&store, names),
        ["list"] => list(&store),
        _ => {
            eprintln!("Usage: vzpkg create cache <ostemplate>... | vzpkg list");
            return ExitCode::from(1);
        }
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vzpkg: {e}");
            ExitCode::from(1)
        }
    }
}

fn create_caches(store: &CacheStore, names: &[&str]) -> Result<(), Box<dyn std::error::Error>> {
    for name in names {
        let name: TemplateName = name.parse()?;
        let path = if name.to_string() == "busybox" || name.distro() == Some("busybox") {
            BusyboxBuilder::new(Path::new(BUSYBOX)).build(store, &name)?
        } else {
            return Err(
                format!("no builder for template {name}: only busybox is built here").into()
            );
        };
        println!("Cache {} created", path.display());
    }
    Ok(())
}

fn list(store: &CacheStore) -> Result<(), Box<dyn std::error::Error>> {
    for cache in store.list()? {
        println!("{}", cache.name());
    }
    Ok(())
}
