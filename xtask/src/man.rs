//! `cargo xtask man`: writes the man pages (`man/`) and the bash and zsh completions
//! (`completions/`) that vz-ctl's option tables generate. xtask depends on no vz-* crate, so
//! it runs vz-ctl's own freshness test with `VZ_UPDATE_GENERATED=1`, which writes the files
//! instead of comparing them; the same test, run plainly by `cargo xtask test`, fails when the
//! committed files are stale.

use crate::sh;
use anyhow::Result;

/// The test that compares (or, here, writes) the generated files.
const FRESHNESS_TEST: &str = "cli::doc::tests::generated_files_are_fresh";

/// Regenerates the files into the tree.
pub(crate) fn run() -> Result<()> {
    let root = sh::project_root();
    sh::run(
        sh::cargo(&root)
            .args(["test", "--quiet", "--package", "vz-ctl", "--lib", "--", "--exact"])
            .arg(FRESHNESS_TEST)
            .env("VZ_UPDATE_GENERATED", "1"),
    )?;
    println!("xtask: man/ and completions/ regenerated; commit them with the table change");
    Ok(())
}
