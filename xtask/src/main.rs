//! `cargo xtask`: the build runner of vz (see <https://github.com/matklad/cargo-xtask/>).
//!
//! ```text
//! cargo xtask test [--host-only | --vm-only] [--no-lint] [-- <nextest args for the host run>]
//! cargo xtask vmtest [--timeout <minutes>] [-- <nextest filters for the guest>]
//! cargo xtask ci [same options as test]     install check, then test
//! cargo xtask install-check                 is everything from scripts/install-deps present?
//! cargo xtask leak-check [--tmp <dir>]...   any vz-test-* kernel object left on this machine?
//! cargo xtask tidy                          the architecture rules (docs/architecture.md)
//! cargo xtask bench [--quick] [--rounds n] [--idle n] [--idle-rounds n] [--density n]
//!                   [--layout l] [--no-install] [--bin-dir d]
//! cargo xtask man                           regenerate man/ and completions/ from the tables
//! cargo xtask deb [--bin-dir DIR] [--out DIR] [--fast]   the Debian package vzctl_<ver>_<arch>.deb
//! ```
//!
//! Everything is driven with `std::process::Command`; xtask depends on no vz-* crate.
#![forbid(unsafe_code)]
#![allow(clippy::print_stdout, clippy::print_stderr, reason = "xtask reports to a person")]

mod bench;
mod bench_idle;
mod bench_peers;
mod bench_stats;
mod deb;
mod initramfs;
mod install;
mod lab;
mod leak;
mod man;
mod sh;
mod test;
mod tidy;
mod vmtest;

use anyhow::{Context, Result, bail};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

const USAGE: &str = "\
usage: cargo xtask <command> [options]

commands:
  test           fmt --check, clippy, build the binaries, nextest on the host (profile ci),
                 the kernel lab (vmtest), then the leak check
      --host-only    skip the kernel lab
      --vm-only      only the kernel lab (and the leak check)
      --no-lint      skip fmt and clippy
      -- <args>      extra arguments for the host's `cargo nextest run`
  vmtest         run the kernel and black-box tests inside Debian's kernel under qemu
      --timeout <minutes>   kill qemu after this long (default 30, env VZ_VMTEST_TIMEOUT)
      -- <args>      nextest filters for the guest, e.g. `-- kernel_quota` or `-- -E 'package(vz-ubc)'`
  ci             install-check, then test (same options)
  tidy           check the architecture rules: leaf crates without vz-* dependencies,
                 unsafe only in sys modules, files under 800 lines, documented items
  man            regenerate man/ and completions/ from vz-ctl's option tables
  bench          vz beside crun, runc, LXC, nspawn and unshare+chroot (as root; installs
                 the peers from Debian's packages if missing): medians and ratios
      --quick        few rounds (a smoke test)
      --rounds <n>   rounds per interleaved measurement (default 30)
      --idle <n>     idle containers per runtime (default 50)
      --idle-rounds <n>  rounds of the idle measurement, runtimes taking turns (default 3)
      --density <n>  only start, measure and stop <n> idle vz VEs
      --layout <l>   layout of the idle VEs: ploop (image, default) or simfs
      --no-install   do not apt-get install missing peers
      --bin-dir <d>  vz binaries from <d> instead of a release build (before/after tables)
  deb            build the Debian package vzctl_<version>_<arch>.deb with dpkg-deb
      --bin-dir <dir>  package these binaries (default: cargo build --release)
      --out <dir>      where the package goes (default: target/deb)
      --fast           gzip -1 instead of xz
  install-check  check that what scripts/install-deps installs is present
  leak-check     fail if a vz-test-* cgroup, mount, loop device, interface or netns exists
      --tmp <dir>    also count mounts and loop devices backed by files under <dir>
";

/// Options of `test` and `ci`.
#[derive(Debug, Default, Clone)]
pub(crate) struct TestOptions {
    pub(crate) host: bool,
    pub(crate) vm: bool,
    pub(crate) lint: bool,
    pub(crate) nextest_args: Vec<String>,
    pub(crate) vm_timeout: Option<Duration>,
}

fn main() -> ExitCode {
    match run(std::env::args().skip(1).collect()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("xtask: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Vec<String>) -> Result<()> {
    let Some((command, rest)) = args.split_first() else {
        print!("{USAGE}");
        bail!("no command given");
    };
    match command.as_str() {
        "test" => test::run(&parse_test_options(rest)?),
        "ci" => {
            install::check()?;
            test::run(&parse_test_options(rest)?)
        }
        "vmtest" => {
            let options = parse_test_options(rest)?;
            if !options.host || !options.vm || !options.lint {
                bail!("vmtest takes only --timeout and `-- <nextest filters>`");
            }
            let root = sh::project_root();
            let target = sh::target_dir(&root)?;
            vmtest::run(&vmtest::VmTest::new(
                root,
                target,
                options.nextest_args,
                options.vm_timeout,
            ))
        }
        "bench" => bench::run(&bench::BenchOptions::parse(rest)?),
        "install-check" => install::check(),
        "man" => man::run(),
        "deb" => deb::run(&deb::parse(rest)?).map(drop),
        "tidy" => tidy::run(&sh::project_root()),
        "leak-check" => {
            let mut tmp = Vec::new();
            let mut it = rest.iter();
            while let Some(arg) = it.next() {
                match arg.as_str() {
                    "--tmp" => {
                        tmp.push(PathBuf::from(it.next().context("--tmp needs a directory")?))
                    }
                    other => bail!("leak-check: unknown option {other:?}"),
                }
            }
            leak::check(&tmp, &leak::Snapshot::default())
        }
        "-h" | "--help" | "help" => {
            print!("{USAGE}");
            Ok(())
        }
        other => {
            print!("{USAGE}");
            bail!("unknown command {other:?}")
        }
    }
}

/// Parses the options of `test`, `ci` and `vmtest`.
fn parse_test_options(args: &[String]) -> Result<TestOptions> {
    let mut options = TestOptions {
        host: true,
        vm: true,
        lint: true,
        nextest_args: Vec::new(),
        vm_timeout: None,
    };
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--host-only" => options.vm = false,
            "--vm-only" => {
                options.host = false;
                options.lint = false;
            }
            "--no-lint" => options.lint = false,
            "--timeout" => {
                let value = it.next().context("--timeout needs a number of minutes")?;
                options.vm_timeout = Some(parse_minutes(value)?);
            }
            "--" => {
                options.nextest_args = it.by_ref().cloned().collect();
            }
            other => bail!("unknown option {other:?} (try `cargo xtask help`)"),
        }
    }
    if !options.host && !options.vm {
        bail!("--host-only and --vm-only exclude each other");
    }
    Ok(options)
}

/// Parses a positive number of minutes (fractions allowed: `0.5`).
pub(crate) fn parse_minutes(value: &str) -> Result<Duration> {
    let minutes: f64 =
        value.parse().with_context(|| format!("timeout {value:?} is not a number of minutes"))?;
    if !(minutes > 0.0 && minutes < 24.0 * 60.0) {
        bail!("timeout {value:?} must be more than 0 and less than a day, in minutes");
    }
    Ok(Duration::from_secs_f64(minutes * 60.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(args: &[&str]) -> Vec<String> {
        args.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn test_options_parse() {
        let o = parse_test_options(&strings(&["--host-only", "--", "-E", "kind(test)"])).unwrap();
        assert!(o.host && !o.vm && o.lint);
        assert_eq!(o.nextest_args, ["-E", "kind(test)"]);
        let o = parse_test_options(&strings(&["--vm-only", "--timeout", "2.5"])).unwrap();
        assert!(!o.host && o.vm && !o.lint);
        assert_eq!(o.vm_timeout, Some(Duration::from_secs(150)));
        assert!(parse_test_options(&strings(&["--host-only", "--vm-only"])).is_err());
        let err = parse_test_options(&strings(&["--bogus"])).unwrap_err();
        assert!(err.to_string().contains("--bogus"), "{err}");
    }

    #[test]
    fn bad_timeouts_name_the_value() {
        for bad in ["0", "-1", "soon", "1e9"] {
            let err = parse_minutes(bad).unwrap_err();
            assert!(format!("{err:#}").contains(bad), "{err:#}");
        }
    }
}
