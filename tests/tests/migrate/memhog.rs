//! The migration tests' memory load: a VE whose program touches a given amount of
//! anonymous memory and then counts, so a migration's frozen time has pages to move and its
//! continuation can be seen.

use std::process::Command;
use std::time::{Duration, Instant};

use vz_tests::{VzTree, ok};

/// The lab's memory load (`shared/reference/criu-vz-lab/memhog.c`): touches MIB MiB of
/// anonymous memory with non-zero bytes, then writes a counter to /data/count every 100 ms.
const MEMHOG_C: &str = r#"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
int main(int argc, char **argv) {
    size_t len = (argc > 1 ? strtoul(argv[1], NULL, 10) : 64) << 20;
    unsigned char *buf = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    struct timespec ts = { 0, 100 * 1000 * 1000 };
    unsigned long n = 0;
    if (buf == MAP_FAILED) return 1;
    for (size_t i = 0; i < len; i += 4096) memset(buf + i, (int)((i / 4096) % 251) + 1, 4096);
    for (;;) {
        FILE *f = fopen("/data/count.tmp", "w");
        if (f) { fprintf(f, "%lu\n", ++n); fclose(f); rename("/data/count.tmp", "/data/count"); }
        nanosleep(&ts, NULL);
    }
}
"#;

pub(crate) fn memhog_count(tree: &VzTree, ctid: &str) -> u64 {
    let path = tree.path().join(format!("root/{ctid}/data/count"));
    std::fs::read_to_string(path).ok().and_then(|t| t.trim().parse().ok()).unwrap_or(0)
}

pub(crate) fn wait_memhog(tree: &VzTree, ctid: &str, n: u64) {
    let start = Instant::now();
    while memhog_count(tree, ctid) < n {
        assert!(start.elapsed() < Duration::from_secs(60), "memhog stuck below {n}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Builds memhog into `tree`'s VE `ctid` (mounted) and makes its boot start it with `mib`
/// MiB touched.
pub(crate) fn install_memhog(tree: &VzTree, ctid: &str, mib: u32) {
    let bin = tree.compile_c("memhog", MEMHOG_C);
    let root = tree.path().join(format!("root/{ctid}"));
    std::fs::create_dir_all(root.join("data")).expect("mkdir /data");
    std::fs::copy(&bin, root.join("bin/memhog")).expect("copy memhog");
    let script = format!("#!/bin/sh\nsetsid /bin/memhog {mib} </dev/null >/dev/null 2>&1 &\n");
    std::fs::write(root.join("etc/init.d/S50mem"), script).expect("write S50mem");
    ok(Command::new("chmod")
        .arg("755")
        .arg(root.join("etc/init.d/S50mem"))
        .output()
        .expect("chmod"));
}

/// A VE whose boot starts memhog with 256 MiB touched.
pub(crate) fn memhog_ve(tree: &VzTree, ctid: &str) {
    tree.build_busybox_cache();
    ok(tree.run("vzctl", &["create", ctid, "--ostemplate", "busybox"]));
    ok(tree.run("vzctl", &["set", ctid, "--ram", "1G", "--swap", "0", "--save"]));
    ok(tree.run("vzctl", &["mount", ctid]));
    install_memhog(tree, ctid, 256);
    ok(tree.run("vzctl", &["start", ctid, "--wait"]));
    wait_memhog(tree, ctid, 3);
}
