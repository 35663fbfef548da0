//! Black-box tests of `vzlist`: columns and formats of reference §4, selection, JSON, errors.
#![allow(clippy::tests_outside_test_module, reason = "integration test file")]

use vz_tests::{Need, VzTree, bin_dir, ok, require, unique_ctid, workspace};

#[test]
fn vzlist_shows_running_and_stopped_ves_in_openvz_format() {
    require!(Need::Root, Need::Program("/bin/busybox"), Need::CgroupController("pids"));
    let tree = VzTree::new("");
    tree.build_busybox_cache();
    let (a, b) = (unique_ctid().to_string(), unique_ctid().to_string());
    for (ctid, host, ip) in [(&a, "a.example", "192.0.2.10"), (&b, "b.example", "192.0.2.11")] {
        ok(tree.run("vzctl", &["create", ctid, "--hostname", host, "--ipadd", ip]));
    }
    ok(tree.run("vzctl", &["start", &a]));

    let running = ok(tree.run("vzlist", &[]));
    let lines: Vec<&str> = running.lines().collect();
    assert_eq!(lines[0], "      CTID      NPROC STATUS    IP_ADDR         HOSTNAME");
    assert_eq!(lines.len(), 2, "only the running VE by default: {running}");
    let row: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(row[0], a);
    assert!(row[1].parse::<u32>().unwrap() >= 1);
    assert_eq!(&row[2..], ["running", "192.0.2.10", "a.example"]);
    assert_eq!(format!("{:>10}", a), lines[1][..10]);

    let all = ok(tree.run("vzlist", &["-a", "-H", "-o", "ctid,status,hostname"]));
    assert_eq!(all.lines().count(), 2);
    assert!(all.contains(&format!("{b:>10} stopped   b.example")), "{all}");
    let stopped = ok(tree.run("vzlist", &["-S", "-1"]));
    assert_eq!(stopped.trim(), b);
    let sorted = ok(tree.run("vzlist", &["-a", "-H", "-o", "ctid", "-s", "-ctid"]));
    let ids: Vec<u32> = sorted.split_whitespace().map(|s| s.parse().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] >= w[1]), "{sorted}");

    let json: serde_json::Value =
        serde_json::from_str(&ok(tree.run("vzlist", &["-a", "-j"]))).unwrap();
    let entries = json.as_array().unwrap();
    assert_eq!(entries.len(), 2);
    let first = entries.iter().find(|e| e["ctid"] == a.parse::<u64>().unwrap()).unwrap();
    assert_eq!(first["status"], "running");
    assert_eq!(first["ip"], serde_json::json!(["192.0.2.10"]));
    assert_eq!(first["hostname"], "a.example");

    let filtered = ok(tree.run("vzlist", &["-a", "-H", "-o", "ctid", "-h", "b.*"]));
    assert_eq!(filtered.trim(), b);
    ok(tree.run("vzctl", &["stop", &a, "--fast"]));
}

#[test]
fn vzlist_errors_exit_1() {
    require!(Need::Root);
    let tree = VzTree::new("");
    let unknown = tree.run("vzlist", &["-o", "bogus"]);
    assert_eq!(unknown.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("Unknown field: bogus"));
    let sort = tree.run("vzlist", &["-s", "bogus"]);
    assert_eq!(sort.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&sort.stderr).contains("Invalid sort field name: bogus"));
    let missing = tree.run("vzlist", &[&unique_ctid().to_string()]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("Container(s) not found"));
    assert_eq!(tree.run("vzlist", &["-a"]).status.code(), Some(0), "nothing to list is fine");
    let fields = ok(tree.run("vzlist", &["-L"]));
    assert!(fields.lines().any(|l| l.starts_with("hostname        HOSTNAME")), "{fields}");
}

#[test]
fn different_ves_start_in_parallel() {
    require!(Need::Root, Need::Program("/bin/busybox"), Need::CgroupController("pids"));
    let tree = VzTree::new("");
    tree.build_busybox_cache();
    let ids: Vec<String> = (0..3).map(|_| unique_ctid().to_string()).collect();
    for id in &ids {
        ok(tree.run("vzctl", &["create", id]));
    }
    let children: Vec<_> =
        ids.iter().map(|id| tree.cmd("vzctl").args(["start", id]).output()).collect();
    for child in children {
        ok(child.unwrap());
    }
    let listed = ok(tree.run("vzlist", &["-H", "-1"]));
    assert_eq!(listed.lines().count(), 3, "{listed}");
    let stops: Vec<_> = ids
        .iter()
        .map(|id| tree.cmd("vzctl").args(["stop", id, "--fast"]).spawn().unwrap())
        .collect();
    for mut stop in stops {
        assert!(stop.wait().unwrap().success());
    }
}

#[test]
fn getopt_forms_and_the_bash_completions_list_ctids() {
    require!(Need::Root, Need::Program("/bin/busybox"), Need::Program("/bin/bash"));
    let tree = VzTree::new("");
    tree.build_busybox_cache();
    let ctid = unique_ctid().to_string();
    let name = format!("n{ctid}");
    ok(tree.run("vzctl", &["create", &ctid, "--name", &name]));
    // The forms OpenVZ's own bash completion (vzctl.sh) and scripts use, and `-1`.
    let forms: [&[&str]; 6] = [
        &["-H", "-a", "-octid"],
        &["-H", "-S", "-octid"],
        &["-Ho", "ctid", "-a"],
        &["-HSo", "ctid"],
        &["-a", "-1"],
        &["-aHo", "ctid"],
    ];
    for args in forms {
        assert_eq!(ok(tree.run("vzlist", args)).trim(), ctid, "vzlist {args:?}");
    }
    assert_eq!(ok(tree.run("vzlist", &["-H", "-S", "-oname"])).trim(), name);
    assert_eq!(ok(tree.run("vzlist", &["-H", "-octid"])).trim(), "", "nothing runs");
    // vz's bash completion offers the CTID after `vzctl start` and `vzlist`.
    let path = format!("{}:{}", bin_dir().display(), std::env::var("PATH").unwrap_or_default());
    for words in ["vzctl start ''", "vzlist ''"] {
        let script = format!(
            "source {}/completions/vz.bash; COMP_WORDS=({words}); \
             COMP_CWORD=$((${{#COMP_WORDS[@]}} - 1)); \
             $(complete -p ${{COMP_WORDS[0]}} | sed 's/.*-F \\([^ ]*\\).*/\\1/'); \
             printf '%s\\n' \"${{COMPREPLY[@]}}\"",
            workspace().display()
        );
        let offered = ok(tree
            .in_netns("bash")
            .args(["-c", &script])
            .env("PATH", &path)
            .env("VZ_CONFIG", tree.vz_conf())
            .output()
            .unwrap());
        assert!(offered.lines().any(|l| l == ctid), "{words}: {offered}");
    }
}
