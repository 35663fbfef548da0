#!/bin/bash
# The kernel lab's job, run as root inside the guest (in the overlay of the host's root) by
# /init. Written by `cargo xtask vmtest` into the job share, with job.env beside it. Writes
# what the host reads into /vzlab: smoke.log, nextest.log, skips.log, leaks.log and status
# (the number of failed steps; absent if the guest died first).
set -u
. /vzlab/job.env
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/root/.cargo/bin
export HOME=/root TMPDIR=/tmp/vz-test-tmp.lab VZ_TEST_SKIP_LOG=/vzlab/skips.log
mkdir -p "$TMPDIR"
say() { echo "VZLAB: $*"; }
uptime_s() { cut -d' ' -f1 /proc/uptime; }
failed=0
ip link set lo up

# --- smoke: what the lab promises, checked before any test runs ----------------------------
smoke() {
    local ok=1 img=/tmp/vz-lab-smoke.img mnt=/tmp/vz-lab-smoke.mnt dev
    echo "kernel: $(uname -r)"
    echo "cgroup2 at /sys/fs/cgroup: $(stat -fc %T /sys/fs/cgroup)"
    echo "cgroup.controllers: $(cat /sys/fs/cgroup/cgroup.controllers)"
    echo "cgroup.subtree_control: $(cat /sys/fs/cgroup/cgroup.subtree_control)"
    [ "$(stat -fc %T /sys/fs/cgroup)" = cgroup2fs ] || { echo "FAIL: /sys/fs/cgroup is not cgroup2"; ok=0; }
    for c in cpu cpuset io memory pids; do
        grep -qw "$c" /sys/fs/cgroup/cgroup.subtree_control || { echo "FAIL: controller $c not enabled"; ok=0; }
    done
    grep -q ' cgroup ' /proc/mounts && { echo "FAIL: a cgroup v1 hierarchy is mounted"; ok=0; }
    echo "capabilities: $(grep CapEff /proc/self/status)"
    truncate -s 32M "$img" && mkfs.ext4 -q -F -O quota "$img" && mkdir -p "$mnt" || { echo "FAIL: mkfs.ext4 -O quota"; ok=0; }
    if dev=$(losetup -f --show "$img"); then
        if mount -t ext4 -o usrquota,grpquota "$dev" "$mnt"; then
            grep " $mnt " /proc/mounts
            grep " $mnt " /proc/mounts | grep -q usrquota || { echo "FAIL: usrquota not in the mount options"; ok=0; }
            umount "$mnt"
        else
            echo "FAIL: ext4 with usrquota,grpquota does not mount from $dev"; ok=0
        fi
        losetup -d "$dev"
    else
        echo "FAIL: losetup -f --show $img"; ok=0
    fi
    rm -rf "$img" "$mnt"
    [ $ok = 1 ] && echo "smoke: ok"
    [ $ok = 1 ]
}
say "smoke check at $(uptime_s) s"
smoke 2>&1 | tee /vzlab/smoke.log
[ "${PIPESTATUS[0]}" = 0 ] || { say "smoke check FAILED"; failed=$((failed + 1)); }

# --- the tests ----------------------------------------------------------------------------------
say "tests start at $(uptime_s) s"
cd "$VZ_WORKSPACE" || exit 1
cargo-nextest nextest run --profile vm --color never --no-tests=warn \
    --binaries-metadata /vzlab/binaries-metadata.json --cargo-metadata /vzlab/cargo-metadata.json \
    --workspace-remap "$VZ_WORKSPACE" "${VZ_NEXTEST_ARGS[@]}" 2>&1 | tee /vzlab/nextest.log
[ "${PIPESTATUS[0]}" = 0 ] || { say "tests FAILED"; failed=$((failed + 1)); }
say "tests end at $(uptime_s) s"

# --- leak check ----------------------------------------------------------------------------------
"$VZ_XTASK" leak-check --tmp "$TMPDIR" 2>&1 | tee /vzlab/leaks.log
[ "${PIPESTATUS[0]}" = 0 ] || { say "leak check FAILED"; failed=$((failed + 1)); }

echo "$failed" >/vzlab/status
sync
say "job done at $(uptime_s) s, $failed failed step(s)"
