//! Black-box tests of OpenVZ's small tools on vz's accounting: `vzubc` (its table, `-q`,
//! `-c`, `-r` with its state directory, `-f`, `--proc`, `-w` under watch(1)), `vzpid`,
//! `vzmemcheck`, `vzoversell`, and vzlist's `laverage`, `uptime` and other numeric JSON.
#![allow(clippy::tests_outside_test_module, reason = "integration test file")]

use std::process::Stdio;

use vz_tests::{Need, VzTree, ok, output_text, require, unique_ctid};

/// The numproc row of a vzubc table, split at `|`.
fn numproc_row(table: &str) -> Option<Vec<String>> {
    let line = table.lines().find(|l| l.trim_start().starts_with("numproc|"))?;
    Some(line.split('|').map(|c| c.trim().to_owned()).collect())
}

fn failcnt(tree: &VzTree, ctid: &str) -> u64 {
    ok(tree.run("vzlist", &["-H", "-o", "numproc.f", ctid]))
        .trim()
        .parse()
        .expect("numproc.f is a number")
}

#[test]
fn vzubc_shows_openvz_table_quiet_relative_and_color() {
    require!(Need::Root, Need::Program("/bin/busybox"), Need::CgroupController("pids"));
    let tree = VzTree::new("");
    let ctid = tree.running_busybox_ve();
    ok(tree.run("vzctl", &["set", &ctid, "--numproc", "20:20"]));

    let table = ok(tree.run("vzubc", &[&ctid]));
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(
        lines[1],
        format!("CT {ctid:<10}| HELD  Bar%  Lim%| MAXH  Bar%  Lim%| BAR | LIM | FAIL")
    );
    let row = numproc_row(&table).expect("numproc row");
    assert_eq!(row[3], "20", "barrier: {table}");
    assert_eq!(row[4], "20", "limit");
    assert!(table.contains("   physpages|"), "vswap RAM limit shown: {table}");
    assert!(!table.contains("kmemsize|"), "unlimited rows only with -v: {table}");
    assert!(ok(tree.run("vzubc", &["-v", &ctid])).contains("kmemsize|"));

    // Nothing near a limit yet: -q shows nothing for numproc.
    let quiet = ok(tree.run("vzubc", &["-q", &ctid]));
    assert!(numproc_row(&quiet).is_none(), "{quiet}");

    // Refused forks: numproc fails, near its limit, in red with -c.
    let forks = tree.run("vzctl", &["exec", &ctid, "for i in $(seq 40); do sleep 60 & done"]);
    let first = failcnt(&tree, &ctid);
    assert!(first > 0, "{}", output_text(&forks));
    let quiet = ok(tree.run("vzubc", &["-q", &ctid]));
    assert_eq!(numproc_row(&quiet).expect("failing numproc shown")[5], format!("{first}"));
    let color = ok(tree.run("vzubc", &["-c", &ctid]));
    assert!(color.contains("\x1b[1;31m      numproc|"), "{color:?}");

    // -r: fail counters since the previous run, kept in the state directory.
    let store = tree.path().join("ubc-store");
    let store_arg = store.to_str().unwrap();
    let rel = ok(tree.run("vzubc", &["-q", "-r", "-rd", store_arg, &ctid]));
    assert!(rel.contains("|+FAIL"), "{rel}");
    assert_eq!(numproc_row(&rel).unwrap()[5], format!("{first}"));
    let saved = std::fs::read_to_string(store.join(format!("ubc.{ctid}.numproc.failcnt")));
    assert_eq!(saved.unwrap().trim(), first.to_string());
    let again = ok(tree.run("vzubc", &["-q", "-r", "-rd", store_arg, &ctid]));
    assert_eq!(numproc_row(&again).expect("still near its limit")[5], "-", "{again}");
    tree.run("vzctl", &["exec", &ctid, "for i in $(seq 10); do sleep 60 & done"]);
    let second = failcnt(&tree, &ctid);
    assert!(second > first);
    let delta = ok(tree.run("vzubc", &["-q", "-r", "-rd", store_arg, &ctid]));
    assert_eq!(numproc_row(&delta).unwrap()[5], format!("{}", second - first), "{delta}");
    ok(tree.run("vzubc", &["-rd", store_arg, "-rc", &ctid]));
    assert!(!store.join(format!("ubc.{ctid}.numproc.failcnt")).exists(), "-rc clears");

    // --proc prints /proc/user_beancounters; -f reads it back (OpenVZ's own vzubc could too).
    let proc_text = ok(tree.run("vzubc", &["--proc", &ctid]));
    assert!(proc_text.starts_with("Version: 2.5\n"), "{proc_text}");
    let file = tree.path().join("ubc.txt");
    std::fs::write(&file, &proc_text).unwrap();
    let from_file = ok(tree.run("vzubc", &["-f", file.to_str().unwrap()]));
    assert_eq!(numproc_row(&from_file).unwrap()[5], format!("{second}"), "{from_file}");
    let mut child = tree
        .cmd("vzubc")
        .args(["-q", "-f", "-", &ctid])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), proc_text.as_bytes()).unwrap();
    let piped = ok(child.wait_with_output().unwrap());
    assert!(numproc_row(&piped).is_some(), "{piped}");

    // Bad command lines exit 2 with a reason.
    for bad in [&["-qh", "0.5"][..], &["-q", "-v"], &["-w", "-c"], &["-x"]] {
        let out = tree.run("vzubc", bad);
        assert_eq!(out.status.code(), Some(2), "{bad:?}: {}", output_text(&out));
    }
    let missing = tree.run("vzubc", &[&unique_ctid().to_string()]);
    assert_eq!(missing.status.code(), Some(1), "{}", output_text(&missing));
}

#[test]
fn vzubc_watch_runs_itself_under_watch() {
    require!(
        Need::Root,
        Need::Program("/bin/busybox"),
        Need::CgroupController("pids"),
        Need::Program("/usr/bin/watch"),
        Need::Program("/usr/bin/script")
    );
    let tree = VzTree::new("");
    let ctid = tree.running_busybox_ve();
    // watch(1) needs a terminal: script(1) gives it one. The test reads what it drew, then
    // ends script (its child) by pid with SIGTERM: script ends watch and waits for it.
    let vzubc = vz_tests::bin_dir().join("vzubc");
    let log = tree.path().join("watch.out");
    let mut script = tree
        .in_netns("script")
        .args(["-qfc", &format!("{} -wn 1 -wt {ctid}", vzubc.display())])
        .arg(&log)
        .env("VZ_CONFIG", tree.vz_conf())
        .env("TERM", "xterm")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let text = loop {
        let text = String::from_utf8_lossy(&std::fs::read(&log).unwrap_or_default()).into_owned();
        if text.contains("physpages|") || std::time::Instant::now() > deadline {
            break text;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    let pid = nix::unistd::Pid::from_raw(i32::try_from(script.id()).unwrap());
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
    let ended = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while script.try_wait().ok().flatten().is_none() && std::time::Instant::now() < ended {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let _ = script.kill();
    let _ = script.wait();
    // watch draws with cursor moves rather than newlines: the cells are there.
    assert!(text.contains(&format!("CT {ctid}")), "{text}");
    assert!(text.contains("physpages|"), "{text}");
}

#[test]
fn vzpid_names_the_ve_of_a_process() {
    require!(Need::Root, Need::Program("/bin/busybox"), Need::CgroupController("pids"));
    let tree = VzTree::new("");
    let ctid = tree.running_busybox_ve();
    let init = tree.init_pid(&ctid);
    let me = std::process::id().to_string();
    let out = ok(tree.run("vzpid", &[&init, &me]));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "Pid\tVEID\tName");
    assert_eq!(lines[1], format!("{init}\t{ctid}\tinit"), "{out}");
    assert!(lines[2].starts_with(&format!("{me}\t0\t")), "{out}");

    let mut child =
        tree.cmd("vzpid").arg("-").stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), format!("{init}\n").as_bytes())
        .unwrap();
    let piped = ok(child.wait_with_output().unwrap());
    assert_eq!(piped.lines().nth(1), Some(format!("{init}\t{ctid}\tinit").as_str()));

    assert_eq!(tree.run("vzpid", &[]).status.code(), Some(1));
    assert_eq!(tree.run("vzpid", &["abc"]).status.code(), Some(1));
}

#[test]
fn vzmemcheck_and_vzoversell_sum_the_running_ves() {
    require!(Need::Root, Need::Program("/bin/busybox"), Need::CgroupController("memory"));
    let tree = VzTree::new("");
    let ctid = tree.running_busybox_ve();

    let check = ok(tree.run("vzmemcheck", &["-v"]));
    let lines: Vec<&str> = check.lines().collect();
    assert_eq!(lines[0], "Output values in %");
    assert_eq!(
        lines[1],
        "CTID        LowMem  LowMem     RAM MemSwap MemSwap   Alloc   Alloc   Alloc"
    );
    let row: Vec<f64> = lines
        .iter()
        .find(|l| l.starts_with(&format!("{ctid} ")))
        .expect("a row for the VE")
        .split_whitespace()
        .skip(1)
        .map(|v| v.parse().unwrap())
        .collect();
    assert_eq!(row.len(), 8);
    assert!(row[2] > 0.0, "the VE uses some RAM: {check}");
    assert!(lines.iter().any(|l| l.starts_with("Summary: ")), "{check}");

    let absolute = ok(tree.run("vzmemcheck", &["-A"]));
    assert!(absolute.starts_with("Output values in Mbytes\n"), "{absolute}");
    let node: Vec<f64> =
        absolute.lines().last().unwrap().split_whitespace().map(|v| v.parse().unwrap()).collect();
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap();
    let total_kb: f64 =
        meminfo.lines().next().unwrap().split_whitespace().nth(1).unwrap().parse().unwrap();
    assert!((node[2] - total_kb / 1024.0).abs() < 0.01, "RAM column is MemTotal: {absolute}");
    assert_eq!(tree.run("vzmemcheck", &["-x"]).status.code(), Some(1));

    let oversell = ok(tree.run("vzoversell", &[]));
    let row = oversell
        .lines()
        .find(|l| l.trim_start().starts_with(&format!("{ctid} ")))
        .expect("a row for the VE");
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!((cells[3], cells[7]), ("256M", "512M"), "RAM and swap limits: {oversell}");
    assert!(oversell.contains("RAM        available: "), "{oversell}");
    // The same report from the text of /proc/user_beancounters.
    let file = tree.path().join("ubc.txt");
    std::fs::write(&file, ok(tree.run("vzubc", &["--proc"]))).unwrap();
    let from_file = ok(tree.run("vzoversell", &[file.to_str().unwrap()]));
    assert!(from_file.lines().any(|l| l.trim_start().starts_with(&format!("{ctid} "))));
}

#[test]
fn vzlist_laverage_and_numeric_json() {
    require!(Need::Root, Need::Program("/bin/busybox"), Need::CgroupController("pids"));
    let tree = VzTree::new("");
    let ctid = tree.running_busybox_ve();
    ok(tree.run(
        "vzctl",
        &["exec", &ctid, "setsid sh -c 'while :; do :; done' </dev/null >/dev/null 2>&1 &"],
    ));
    // The averages (the console server samples every 5 s): the busy loop shows within two
    // samples (one busy task: 0.08 after one).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    let (table, cells, load) = loop {
        let table = ok(tree.run("vzlist", &["-o", "ctid,laverage,uptime,vswap,iolimit", &ctid]));
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines[0], "      CTID       LAVERAGE          UPTIME VSWAP    IOLIMIT");
        let cells: Vec<String> = lines[1].split_whitespace().map(str::to_owned).collect();
        let load: Vec<f64> = cells[1].split('/').map(|v| v.parse().unwrap()).collect();
        if load[0] >= 0.07 || std::time::Instant::now() >= deadline {
            break (table, cells, load);
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    };
    assert_eq!(load.len(), 3);
    assert!(load[0] >= 0.07, "the busy loop runs: {table}");
    assert_eq!(cells[3], "yes");
    assert_eq!(cells[4], "-");

    let json: serde_json::Value = serde_json::from_str(&ok(
        tree.run("vzlist", &["-j", "-o", "ctid,uptime,laverage,cpuunits,onboot,vswap", &ctid])
    ))
    .unwrap();
    let ve = &json[0];
    assert!(ve["uptime"].is_u64(), "{ve}");
    assert!(
        ve["laverage"].as_array().is_some_and(|a| a.len() == 3 && a.iter().all(|v| v.is_f64()))
    );
    assert_eq!(ve["vswap"], true);
    ok(tree.run("vzctl", &["stop", &ctid, "--fast"]));
    let stopped: serde_json::Value =
        serde_json::from_str(&ok(tree.run("vzlist", &["-j", "-o", "uptime,laverage", &ctid])))
            .unwrap();
    assert!(stopped[0]["uptime"].is_null() && stopped[0]["laverage"].is_null(), "{stopped}");
}

/// `vzsplit -n N -f NAME` writes a VSwap sample dividing the node's RAM among N containers
/// that `vzctl create --config NAME` takes; an existing file, `-v no` and `-n 0` are refused.
#[test]
fn vzsplit_writes_a_sample_that_create_takes() {
    require!(Need::Root, Need::Program("/bin/busybox"));
    let tree = VzTree::new("");
    tree.build_busybox_cache();
    let name = format!("split{}", unique_ctid());
    let out = tree.run("vzsplit", &["-n", "10", "-f", &name]);
    assert!(out.status.success(), "{}", output_text(&out));
    let sample = tree.path().join(format!("conf/ve-{name}.conf-sample"));
    let text = std::fs::read_to_string(&sample).expect("the sample");
    let meminfo = std::fs::read_to_string("/proc/meminfo").expect("meminfo");
    let ram_kb: u64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("MemTotal");
    let page =
        nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE).ok().flatten().unwrap_or(4096);
    let pages = (ram_kb * 1024 - 52_428_800) / 10 / u64::try_from(page).unwrap_or(4096);
    assert!(text.contains(&format!("PHYSPAGES=\"0:{pages}\"")), "{text}");
    let ctid = unique_ctid().to_string();
    ok(tree.run("vzctl", &["create", &ctid, "--ostemplate", "busybox", "--config", &name]));
    assert!(tree.ve_conf(&ctid).contains(&format!("PHYSPAGES=\"0:{pages}\"")));
    assert_eq!(tree.run("vzsplit", &["-n", "10", "-f", &name]).status.code(), Some(1), "exists");
    assert_eq!(tree.run("vzsplit", &["-n", "0"]).status.code(), Some(1));
    assert_eq!(tree.run("vzsplit", &["-n", "2", "-v", "no"]).status.code(), Some(1));
}

/// `vzcalc [-v] CTID`: OpenVZ's table; Current is n/a for a stopped VE and a number once it
/// runs; a numproc barrier is measured against threads-max; an unknown CT is 1.
#[test]
fn vzcalc_shows_current_promised_and_max() {
    require!(Need::Root, Need::Program("/bin/busybox"), Need::CgroupController("pids"));
    let tree = VzTree::new("");
    tree.build_busybox_cache();
    let ctid = unique_ctid().to_string();
    ok(tree.run("vzctl", &["create", &ctid, "--ostemplate", "busybox"]));
    ok(tree.run("vzctl", &["set", &ctid, "--numproc", "500", "--save"]));
    let row = |text: &str, name: &str| -> Vec<String> {
        let line =
            text.lines().find(|l| l.starts_with(name)).unwrap_or_else(|| panic!("{name}: {text}"));
        line[name.len()..].split_whitespace().map(str::to_owned).collect()
    };
    let stopped = ok(tree.run("vzcalc", &["-v", &ctid]));
    assert!(stopped.starts_with("Resource     Current(%)  Promised(%)  Max(%)"), "{stopped}");
    assert_eq!(row(&stopped, "Memory")[0], "n/a", "{stopped}");
    let threads: f64 =
        std::fs::read_to_string("/proc/sys/kernel/threads-max").unwrap().trim().parse().unwrap();
    let max: f64 = row(&stopped, "Num. Proc")[2].parse().expect("a percentage");
    assert!((max - 500.0 / threads * 100.0).abs() < 0.01, "{stopped}");
    ok(tree.run("vzctl", &["start", &ctid]));
    let running = ok(tree.run("vzcalc", &[&ctid]));
    let current: f64 = row(&running, "Memory")[0].parse().expect("a number once it runs");
    assert!(current > 0.0, "{running}");
    ok(tree.run("vzctl", &["stop", &ctid, "--fast"]));
    assert_eq!(tree.run("vzcalc", &[&unique_ctid().to_string()]).status.code(), Some(1));
}
