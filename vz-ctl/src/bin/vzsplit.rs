//! `vzsplit [-n NUMBER] [-f NAME] [-s SWAP_KB] [-v yes]`: OpenVZ's vzsplit in its VSwap form —
//! a sample config that divides the node among NUMBER containers: RAM less the host's reserve
//! as PHYSPAGES, the swap as SWAPPAGES, half of the VE_PRIVATE file system less the host's
//! share as DISKSPACE and DISKINODES, every other beancounter unlimited, CPUUNITS 1000. The
//! reserves and the per-container minimum are vzsplit's (vzctl's `vzsplit.c`).
#![allow(clippy::print_stdout, clippy::print_stderr, reason = "a command line program")]

use std::fmt::Write as _;
use std::io::BufRead as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use vz_ctl::cli::tool::{self, ToolArg, VZSPLIT};
use vz_ctl::config::GlobalConfig;
use vz_ctl::error::{CtlError, Tool, ToolError};
use vz_ubc::Resource;

/// RAM kept for the host (vzsplit's `SYSRSRV`, 50 MB).
const HOST_RAM: u64 = 52_428_800;
/// The least memory a container is given (vzsplit's `MEMPERVE`).
const MIN_RAM_PER_VE: u64 = 5_542_912;
/// Disk space kept for the host (10 GB) and the default share when the file system cannot be
/// read (KB), as vzsplit.
const HOST_DISK: u64 = 10 << 30;
const DEFAULT_DISKSPACE_KB: u64 = 225_280;
/// Inodes kept for the host and the default share.
const HOST_INODES: u64 = 100_000;
const DEFAULT_DISKINODES: u64 = 88_000;
/// Soft limit = hard / 1.1 (vzsplit's `DS_DELTA`, `DI_DELTA`), as tenths.
const SOFT_TENTHS: u64 = 11;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let outcome = tool::parse(&VZSPLIT, &args).and_then(|parsed| {
        let (mut number, mut name, mut swap_kb) = (None, None, None);
        for arg in parsed {
            match arg {
                ToolArg::Opt(key, Some(value)) if key == "n" => {
                    number = Some(positive(&value, "-n")?)
                }
                ToolArg::Opt(key, Some(value)) if key == "f" => name = Some(value),
                ToolArg::Opt(key, Some(value)) if key == "s" => {
                    swap_kb = Some(count(&value, "-s")?)
                }
                ToolArg::Opt(key, Some(value)) if key == "v" && value == "yes" => {}
                ToolArg::Opt(key, Some(value)) if key == "v" => {
                    return Err(ToolError::Usage(format!(
                        "-v {value}: vz's containers are VSwap containers, only -v yes is made"
                    )));
                }
                ToolArg::Opt(..) => return Ok(VZSPLIT.usage()),
                ToolArg::Word(word) => {
                    return Err(ToolError::Usage(format!("Invalid argument {word}")));
                }
            }
        }
        let number = match number {
            Some(n) => n,
            None => ask_number()?,
        };
        run(number, name.as_deref(), swap_kb)
    });
    tool::exit(Tool::Vzsplit, &VZSPLIT, outcome)
}

fn count(value: &str, option: &str) -> Result<u64, ToolError> {
    value
        .trim()
        .parse()
        .map_err(|_| ToolError::Usage(format!("Invalid argument for {option}: {value}")))
}

fn positive(value: &str, option: &str) -> Result<u64, ToolError> {
    match count(value, option)? {
        0 => Err(ToolError::Usage("Incorrect value for number of containers.".into())),
        n => Ok(n),
    }
}

/// vzsplit's prompt when `-n` is not given.
fn ask_number() -> Result<u64, ToolError> {
    print!("Enter the number of containers: ");
    let _ = std::io::Write::flush(&mut std::io::stdout());
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).map_err(|e| ToolError::Failed(e.to_string()))?;
    positive(&line, "the number of containers")
}

fn run(number: u64, name: Option<&str>, swap_kb: Option<u64>) -> Result<String, ToolError> {
    let global = GlobalConfig::load().map_err(CtlError::GlobalConfig)?;
    let (ram, host_swap) = vz_ctl::list::usage::host_memory()?;
    let swap = swap_kb.map_or(host_swap, |kb| kb * 1024);
    let allowed = ram.saturating_sub(HOST_RAM).saturating_add(swap) / MIN_RAM_PER_VE;
    if allowed < number {
        return Err(ToolError::Failed(format!(
            "On node with {} Mb of memory (RAM + swap) {number} containers can not be \
             allocated\nThe maximum allowed value is {allowed}",
            (ram + swap) >> 20
        )));
    }
    let area = private_base(&global);
    let disk = match nix::sys::statvfs::statvfs(&area) {
        Ok(fs) => disk_share(fs.blocks() * fs.fragment_size(), fs.files(), number),
        Err(e) => {
            eprintln!(
                "WARNING: statfs {} failed ({e}): default disk values are used",
                area.display()
            );
            None
        }
    };
    let (space_kb, inodes) = disk.unwrap_or((DEFAULT_DISKSPACE_KB, DEFAULT_DISKINODES));
    let page = vz_ubc::page_size();
    let config = render(number, ram, swap, page, space_kb, inodes);
    match name {
        None => Ok(config),
        Some(name) => {
            let path = sample_path(&global, name)?;
            write_new(&path, &config)?;
            eprintln!("Config {} was created", path.display());
            Ok(String::new())
        }
    }
}

/// The directory VE_PRIVATE's areas are made in (VE_PRIVATE up to its `$VEID` part).
fn private_base(global: &GlobalConfig) -> PathBuf {
    let private = global.get("VE_PRIVATE").unwrap_or("/vz/private/$VEID");
    let base = private.split("$VEID").next().unwrap_or(private);
    let base = Path::new(base.trim_end_matches('/'));
    match base.is_dir() {
        true => base.to_owned(),
        false => base.parent().unwrap_or(Path::new("/")).to_owned(),
    }
}

/// Each container's DISKSPACE hard limit (KB) and DISKINODES: half of what the file system
/// has beyond the host's share, divided; `None` when it cannot hold NUMBER default shares.
fn disk_share(bytes: u64, inodes: u64, number: u64) -> Option<(u64, u64)> {
    let bytes = if bytes / 2 < HOST_DISK { bytes / 2 } else { bytes - HOST_DISK };
    let inodes = if inodes / 2 < HOST_INODES { inodes / 2 } else { inodes - HOST_INODES };
    let (space_kb, inodes) = (bytes / 1024 / (2 * number), inodes / (2 * number));
    if space_kb < DEFAULT_DISKSPACE_KB / 2 || inodes < DEFAULT_DISKINODES / 2 {
        eprintln!(
            "WARNING: the VE_PRIVATE file system is short for {number} containers: default disk values are used"
        );
        return None;
    }
    Some((space_kb, inodes))
}

/// The config text.
fn render(number: u64, ram: u64, swap: u64, page: u64, space_kb: u64, inodes: u64) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# Configuration file generated by vzsplit for {number} containers\n\
         # on HN with total amount of physical mem {} Mb, swap {} Mb (VSwap)",
        ram >> 20,
        swap >> 20
    );
    let ram_pages = ram.saturating_sub(HOST_RAM) / number / page;
    let swap_pages = swap / number / page;
    for resource in Resource::ALL {
        let value = match resource {
            Resource::PhysPages => format!("0:{ram_pages}"),
            Resource::SwapPages => format!("0:{swap_pages}"),
            Resource::VmGuarPages | Resource::OomGuarPages => "0:unlimited".to_owned(),
            _ => "unlimited".to_owned(),
        };
        let _ = writeln!(out, "{}=\"{value}\"", resource.key());
    }
    let soft = |hard: u64| hard * 10 / SOFT_TENTHS;
    let _ = writeln!(out, "DISKSPACE=\"{}:{space_kb}\"", soft(space_kb));
    let _ = writeln!(out, "DISKINODES=\"{}:{inodes}\"", soft(inodes));
    let _ = writeln!(out, "CPUUNITS=\"1000\"");
    out
}

/// `VE_CONF_DIR/ve-NAME.conf-sample`, for a plain NAME.
fn sample_path(global: &GlobalConfig, name: &str) -> Result<PathBuf, ToolError> {
    if name.is_empty() || name.contains('/') {
        return Err(ToolError::Usage(format!("Invalid config name {name}")));
    }
    Ok(global.conf_dir().join(format!("ve-{name}.conf-sample")))
}

/// Writes `text` to `path`, which must not exist (the file appears whole or not at all).
fn write_new(path: &Path, text: &str) -> Result<(), ToolError> {
    if path.exists() {
        return Err(ToolError::Failed(format!("File {} already exists", path.display())));
    }
    let dir = path.parent().unwrap_or(Path::new("/"));
    let fail =
        |e: std::io::Error| ToolError::Failed(format!("Unable to create {}: {e}", path.display()));
    let mut temp = tempfile::NamedTempFile::new_in(dir).map_err(fail)?;
    std::io::Write::write_all(&mut temp, text.as_bytes()).map_err(fail)?;
    temp.as_file().sync_all().map_err(fail)?;
    temp.persist_noclobber(path).map_err(|e| fail(e.error))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_node_is_shared_out_equally() {
        let text = render(4, (1 << 30) + HOST_RAM, 2 << 30, 4096, 1000, 200);
        assert!(text.contains("PHYSPAGES=\"0:65536\""), "{text}");
        assert!(text.contains("SWAPPAGES=\"0:131072\""), "{text}");
        assert!(
            text.contains("VMGUARPAGES=\"0:unlimited\"") && text.contains("KMEMSIZE=\"unlimited\"")
        );
        assert!(text.contains("DISKSPACE=\"909:1000\"") && text.contains("DISKINODES=\"181:200\""));
    }

    #[test]
    fn the_host_keeps_its_share_of_the_disk() {
        // 100 GiB, 1M inodes, 10 containers: (100 - 10) GiB / 20, (1M - 100k) / 20.
        assert_eq!(disk_share(100 << 30, 1_000_000, 10), Some((4_718_592, 45_000)));
        // A small file system: half of it, still enough for 2.
        assert_eq!(disk_share(4 << 30, 400_000, 2), Some((512 << 10, 75_000)));
        assert_eq!(disk_share(100 << 20, 1000, 50), None);
    }
}
