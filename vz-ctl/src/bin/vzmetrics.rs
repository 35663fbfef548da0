//! `vzmetrics [-o FILE] [CTID ...]`: the VEs' beancounters, CPU, memory, disk quota and
//! network counters in Prometheus's text format (see `vz_ctl::list::metrics` for why this is
//! a tool of its own and not a vzlist option). `-o FILE` replaces FILE atomically, as
//! node-exporter's textfile collector wants (`-o /var/lib/prometheus/node-exporter/vz.prom`).
#![allow(clippy::print_stdout, clippy::print_stderr, reason = "a command line program")]

use std::path::Path;
use std::process::ExitCode;

use vz_ctl::cli::tool::{self, ToolArg, VZMETRICS};
use vz_ctl::config::GlobalConfig;
use vz_ctl::ctid::Ctid;
use vz_ctl::error::{CtlError, Tool, ToolError};
use vz_ctl::list::metrics;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let outcome = tool::parse(&VZMETRICS, &args).and_then(|parsed| {
        let (mut output, mut ctids) = (None, Vec::new());
        for arg in parsed {
            match arg {
                ToolArg::Opt(key, value) if key == "output" => output = value,
                ToolArg::Opt(..) => return Ok(VZMETRICS.usage()),
                ToolArg::Word(word) => ctids.push(word),
            }
        }
        run(output.as_deref(), &ctids)
    });
    tool::exit(Tool::Vzmetrics, &VZMETRICS, outcome)
}

fn run(output: Option<&str>, args: &[String]) -> Result<String, ToolError> {
    if !nix::unistd::Uid::effective().is_root() {
        return Err(ToolError::NotRoot);
    }
    let global = GlobalConfig::load().map_err(CtlError::GlobalConfig)?;
    let mut ctids = Vec::new();
    for arg in args {
        ctids.push(
            Ctid::resolve(arg, &global.names_dir()).map_err(|_| ToolError::BadCtid(arg.clone()))?,
        );
    }
    let text = metrics::collect(&global, &ctids)?.render();
    match output {
        None => Ok(text),
        Some(file) => {
            write_atomic(Path::new(file), &text)
                .map_err(|e| ToolError::Failed(format!("{file}: {e}")))?;
            Ok(String::new())
        }
    }
}

/// Writes `path` through a temporary file beside it and a rename, so a reader never sees
/// half a file.
fn write_atomic(path: &Path, text: &str) -> std::io::Result<()> {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.{}", std::process::id()));
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}
