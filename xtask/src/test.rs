//! `cargo xtask test`: the project's one test command (the README's, run by `.ci/run`).
//!
//! Steps: `cargo fmt --check`, clippy with `-D warnings`, `cargo doc` with warnings denied,
//! tidy (`tidy.rs`), `cargo build --workspace --bins`
//! (the black-box tests find the binaries through `VZ_BIN_DIR`), nextest on the host with the
//! `ci` profile (skips logged to `VZ_TEST_SKIP_LOG` and printed), the kernel lab
//! (`vmtest`), and the leak check. A failed step does not hide the others' results, except
//! that nothing runs after a failed build; the command fails if any step failed.

use crate::{TestOptions, leak, sh, tidy, vmtest};
use anyhow::{Context, Result, bail};
use std::path::Path;
use std::time::{Duration, Instant};

/// One step's outcome, for the closing table.
#[derive(Debug)]
struct Step {
    name: &'static str,
    took: Duration,
    error: Option<String>,
}

/// Runs the steps `options` select and prints a closing table; fails if any step failed.
pub(crate) fn run(options: &TestOptions) -> Result<()> {
    let root = sh::project_root();
    let target = sh::target_dir(&root)?;
    let tmp = std::env::temp_dir().join(format!("vz-test-tmp.{}", std::process::id()));
    let tmp_dirs = vec![tmp.clone(), target.join("tmp")];
    let before = leak::Snapshot::take(&tmp_dirs);
    let mut steps = Vec::new();
    let mut host_summary = None;
    let mut skips = Vec::new();

    let mut step = |name: &'static str, f: &mut dyn FnMut() -> Result<()>| {
        println!("\n==== {name} ====");
        let start = Instant::now();
        let error = f().err().map(|e| format!("{e:#}"));
        if let Some(error) = &error {
            println!("xtask: {name} FAILED: {error}");
        }
        steps.push(Step { name, took: start.elapsed(), error: error.clone() });
        error.is_none()
    };

    if options.lint {
        step("fmt", &mut || sh::run(sh::cargo(&root).args(["fmt", "--all", "--", "--check"])));
        step("clippy", &mut || {
            sh::run(sh::cargo(&root).args([
                "clippy",
                "--workspace",
                "--all-targets",
                "--",
                "-D",
                "warnings",
            ]))
        });
        step("doc", &mut || {
            let mut doc = sh::cargo(&root);
            sh::run(
                doc.args(["doc", "--workspace", "--no-deps"]).env("RUSTDOCFLAGS", "-D warnings"),
            )
        });
        step("tidy", &mut || tidy::run(&root));
    }
    let built =
        step("build", &mut || sh::run(sh::cargo(&root).args(["build", "--workspace", "--bins"])));
    if built && options.host {
        step("host tests", &mut || {
            let (summary, skipped) = host_tests(&root, &target, &tmp, &options.nextest_args)?;
            host_summary = summary;
            skips = skipped;
            Ok(())
        });
    }
    if built && options.vm {
        step("kernel lab", &mut || {
            let lab =
                vmtest::VmTest::new(root.clone(), target.clone(), Vec::new(), options.vm_timeout);
            let report = vmtest::run_lab(&lab)?;
            vmtest::print_report(&report);
            Ok(())
        });
    }
    let leaks_ok = step("leak check", &mut || leak::check(&tmp_dirs, &before));
    if leaks_ok && tmp.exists() {
        // No mount is left under it (the leak check passed), so removing it cannot reach
        // into a mounted file system.
        std::fs::remove_dir_all(&tmp)
            .with_context(|| format!("cannot remove {}", tmp.display()))?;
    }

    println!("\n==== summary ====");
    if let Some(summary) = &host_summary {
        println!("host nextest: {summary}");
    }
    if !skips.is_empty() {
        println!("{} test(s) skipped on the host:", skips.len());
        for skip in &skips {
            println!("  {skip}");
        }
    }
    for s in &steps {
        let verdict = if s.error.is_some() { "FAILED" } else { "ok" };
        println!("  {:<12} {verdict:<7} {:>7.1} s", s.name, s.took.as_secs_f64());
    }
    let failed: Vec<&str> = steps.iter().filter(|s| s.error.is_some()).map(|s| s.name).collect();
    if !failed.is_empty() {
        bail!("failed: {}", failed.join(", "));
    }
    if !built {
        bail!("the build failed");
    }
    Ok(())
}

/// Runs nextest on the host as it is (cgroup v1 here); returns its summary line and the
/// skips the test kit logged.
fn host_tests(
    root: &Path,
    target: &Path,
    tmp: &Path,
    extra: &[String],
) -> Result<(Option<String>, Vec<String>)> {
    std::fs::create_dir_all(tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    let skip_log = target.join("vz-test-skips.log");
    if skip_log.exists() {
        std::fs::remove_file(&skip_log)
            .with_context(|| format!("cannot clear {}", skip_log.display()))?;
    }
    let mut cmd = sh::cargo(root);
    cmd.args(["nextest", "run", "--workspace", "--profile", "ci"])
        .args(extra)
        .env("VZ_BIN_DIR", target.join("debug"))
        .env("VZ_TEST_SKIP_LOG", &skip_log)
        .env("TMPDIR", tmp);
    let mut summary = None;
    let ended = sh::stream(&mut cmd, None, |line, _| {
        if sh::is_nextest_summary(line) {
            summary = Some(sh::strip_ansi(line).trim().to_owned());
        }
    })?;
    let skips: Vec<String> = std::fs::read_to_string(&skip_log)
        .map(|t| t.lines().map(str::to_owned).collect())
        .unwrap_or_default();
    if !skips.is_empty() {
        println!("xtask: {} test(s) skipped (from {}):", skips.len(), skip_log.display());
        for skip in &skips {
            println!("  {skip}");
        }
    }
    match ended {
        sh::Ended::Exited(status) if status.success() => {}
        sh::Ended::Exited(status) => bail!("cargo nextest run failed ({status})"),
        sh::Ended::TimedOut => bail!("cargo nextest run timed out"),
    }
    if summary.is_none() {
        bail!("nextest printed no closing summary line");
    }
    Ok((summary, skips))
}
