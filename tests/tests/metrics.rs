//! Black-box test of `vzmetrics`: a running VE's beancounters, CPU, memory, disk quota and
//! network counters in Prometheus's text format, accepted by `promtool check metrics`
//! (Debian's prometheus package, installed by scripts/install-deps), with values that match
//! the VE's settings and what it did.
#![allow(clippy::tests_outside_test_module, reason = "integration test file")]

use std::io::Write;
use std::process::{Command, Stdio};

use vz_tests::{Need, VzTree, ok, output_text, require, unique_ctid};

const PROMTOOL: &str = "/usr/local/bin/promtool";

/// The value of the sample `name{labels}` (labels as printed, in order).
fn sample(text: &str, name: &str, labels: &str) -> f64 {
    let prefix = format!("{name}{{{labels}}} ");
    let line = text
        .lines()
        .find(|l| l.starts_with(&prefix))
        .unwrap_or_else(|| panic!("no sample {prefix}in\n{text}"));
    let value = &line[prefix.len()..];
    if value == "+Inf" { f64::INFINITY } else { value.parse().expect("a sample value") }
}

#[test]
fn vzmetrics_passes_promtool_and_reports_the_ve() {
    require!(
        Need::Root,
        Need::Program("/bin/busybox"),
        Need::CgroupController("pids"),
        Need::Program(PROMTOOL)
    );
    let tree = VzTree::new("");
    tree.build_busybox_cache();
    let (ctid, stopped) = (unique_ctid().to_string(), unique_ctid().to_string());
    ok(tree.run("vzctl", &["create", &ctid, "--hostname", "m.example", "--ipadd", "192.0.2.40"]));
    ok(tree.run("vzctl", &["create", &stopped]));
    ok(tree.run("vzctl", &["start", &ctid, "--wait"]));
    ok(tree.run("vzctl", &["set", &ctid, "--numproc", "50:50", "--cpulimit", "50"]));
    // Some work: CPU time, and packets on the VE's loopback.
    ok(tree.run(
        "vzctl",
        &[
            "exec",
            &ctid,
            "i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done; ping -c 2 -W 1 127.0.0.1 >/dev/null",
        ],
    ));

    let text = ok(tree.run("vzmetrics", &[]));
    let mut check = Command::new(PROMTOOL)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    check.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let checked = check.wait_with_output().unwrap();
    assert!(checked.status.success(), "promtool: {}\n{text}", output_text(&checked));
    assert!(output_text(&checked).trim().is_empty(), "lint findings: {}", output_text(&checked));

    let ct = format!("ctid=\"{ctid}\"");
    assert_eq!(sample(&text, "vz_ve_running", &ct), 1.0);
    assert_eq!(sample(&text, "vz_ve_running", &format!("ctid=\"{stopped}\"")), 0.0);
    assert!(text.contains(&format!(
        "vz_ve_info{{{ct},status=\"running\",hostname=\"m.example\",ostemplate=\"busybox\"}} 1"
    )));
    let numproc = format!("{ct},resource=\"numproc\",unit=\"items\"");
    assert_eq!(sample(&text, "vz_ubc_limit", &numproc), 50.0);
    assert_eq!(sample(&text, "vz_ubc_barrier", &numproc), 50.0);
    assert!(sample(&text, "vz_ubc_held", &numproc) >= 1.0);
    assert_eq!(sample(&text, "vz_ubc_failcnt_total", &numproc), 0.0);
    assert_eq!(
        sample(&text, "vz_ubc_limit", &format!("{ct},resource=\"kmemsize\",unit=\"bytes\"")),
        f64::INFINITY
    );
    assert_eq!(sample(&text, "vz_memory_limit_bytes", &ct), 256.0 * 1024.0 * 1024.0);
    assert!(sample(&text, "vz_memory_usage_bytes", &ct) > 0.0);
    assert_eq!(sample(&text, "vz_swap_limit_bytes", &ct), 512.0 * 1024.0 * 1024.0);
    assert!(sample(&text, "vz_cpu_usage_seconds_total", &ct) > 0.0);
    assert_eq!(sample(&text, "vz_cpu_limit_cpus", &ct), 0.5);
    assert!(sample(&text, "vz_disk_used_bytes", &ct) > 0.0);
    let hard = sample(&text, "vz_disk_hard_limit_bytes", &ct);
    let quota = ok(tree.run("vzquota", &["-b", "stat", &ctid]));
    let hard_kb: f64 = quota.split_whitespace().nth(2).unwrap().parse().unwrap();
    assert_eq!(hard, hard_kb * 1024.0, "{quota}");
    let lo = format!("{ct},device=\"lo\"");
    assert!(sample(&text, "vz_net_receive_packets_total", &lo) >= 4.0, "two pings and replies");
    assert!(sample(&text, "vz_net_transmit_bytes_total", &lo) > 0.0);
    assert!(sample(&text, "vz_ve_uptime_seconds", &ct) >= 0.0);

    // -o replaces a file atomically (node-exporter's textfile collector); CTIDs select.
    let file = tree.path().join("vz.prom");
    assert_eq!(ok(tree.run("vzmetrics", &["-o", file.to_str().unwrap(), &ctid])), "");
    let written = std::fs::read_to_string(&file).unwrap();
    assert!(written.contains(&format!("vz_ve_running{{{ct}}} 1")), "{written}");
    assert!(!written.contains(&stopped), "{written}");
    let bad = tree.run("vzmetrics", &["--bogus"]);
    assert_eq!(bad.status.code(), Some(2), "{}", output_text(&bad));
}
