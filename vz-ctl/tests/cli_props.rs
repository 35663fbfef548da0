//! Property tests of vzctl's command line: any argument vector, parsed by the library and run
//! by the binary against an empty vz tree, gives a clear error with one of OpenVZ's exit
//! codes, never a panic.
#![allow(clippy::tests_outside_test_module, reason = "integration test file")]

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;

use proptest::prelude::*;
use vz_ctl::cli::{self, defs};

/// The exit codes vzctl may give when refusing a command line or acting on a VE that does
/// not exist (reference §1.7).
const REFERENCE_CODES: &[i32] =
    &[0, 3, 9, 14, 20, 21, 22, 23, 24, 29, 31, 40, 43, 44, 48, 52, 79, 82, 91, 105, 131, 139];

/// A word vzctl may see: commands, options (with and without values), CTIDs, names, junk.
fn word() -> impl Strategy<Value = String> {
    let commands: Vec<String> = [
        "create",
        "destroy",
        "delete",
        "start",
        "stop",
        "restart",
        "status",
        "mount",
        "umount",
        "set",
        "exec",
        "exec2",
        "enter",
        "runscript",
        "help",
        "--help",
        "--version",
        "--quiet",
        "--verbose",
        "--skiplock",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    let options: Vec<String> = defs::OPTIONS.iter().map(|o| format!("--{}", o.name)).collect();
    prop_oneof![
        proptest::sample::select(commands),
        proptest::sample::select(options.clone()),
        proptest::sample::select(options).prop_map(|o| format!("{o}=x")),
        (0u32..3_000_000_000).prop_map(|n| n.to_string()),
        "[a-z0-9:.=_-]{0,12}",
        "[^\\x00]{0,16}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn the_parser_accepts_or_refuses_any_argv_with_20_or_21(
        args in proptest::collection::vec(word(), 0..8)
    ) {
        match cli::parse(&args) {
            Ok(_) => {}
            Err(e) => {
                prop_assert!(matches!(e.exit_code(), 20 | 21), "{args:?}: {e} ({})", e.exit_code());
                prop_assert!(!e.to_string().is_empty());
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Runs the binary: a temporary vz tree with no VE, so whatever the command it ends with
    /// a message and a reference code. Non-UTF-8 arguments included.
    #[test]
    fn the_binary_never_panics_on_any_argv(
        args in proptest::collection::vec(word(), 0..6),
        raw in proptest::option::of(proptest::collection::vec(1u8..=255, 1..6)),
    ) {
        let tree = tempfile::tempdir().unwrap();
        let r = tree.path().display().to_string();
        let conf = format!(
            "LOCKDIR={r}/lock\nDUMPDIR={r}/dump\nTEMPLATE={r}/template\nVE_ROOT={r}/root/$VEID\n\
             VE_PRIVATE={r}/private/$VEID\nVE_CONF_DIR={r}/conf\nVZ_NAMES_DIR={r}/names\n\
             VZ_RUN_DIR={r}/run\nVE_CGROUP_PARENT={}\nLOCK_WAIT=0\n",
            vz_tests::unique_name("cli")
        );
        std::fs::write(tree.path().join("vz.conf"), conf).unwrap();
        let mut argv: Vec<OsString> = args.iter().map(OsString::from).collect();
        if let Some(raw) = raw {
            argv.push(OsString::from_vec(raw));
        }
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_vzctl"))
            .args(&argv)
            .env("VZ_CONFIG", tree.path().join("vz.conf"))
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        prop_assert!(!stderr.contains("panicked"), "{argv:?}: {stderr}");
        let code = out.status.code();
        prop_assert!(code.is_some_and(|c| REFERENCE_CODES.contains(&c)), "{argv:?}: {code:?} {stderr}");
        if code != Some(0) {
            prop_assert!(!stderr.trim().is_empty(), "{argv:?}: an error says what is wrong");
        }
    }
}
