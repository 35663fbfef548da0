#!/bin/sh
# PID 1 of the vz kernel lab (generated into the initramfs by `cargo xtask vmtest`; busybox sh).
# Loads the modules, mounts the host's root (9p, read-only) under an overlay with a tmpfs
# upper layer, gives it fresh proc/sys/dev/tmp, cgroup2 alone at /sys/fs/cgroup with every
# controller enabled for the children of the root, the job share (9p, writable) at /vzlab,
# then runs /vzlab/run.sh in it as root and powers off. Lines starting with "VZLAB:" are read
# by xtask on the host.
/bin/busybox --install -s /bin
export PATH=/bin
say() { echo "VZLAB: $*"; }
die() { say "FATAL: $*"; sync; poweroff -f; sleep 5; exit 1; }
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
say "init started at $(cut -d' ' -f1 /proc/uptime) s"

while read -r m; do
    insmod "/lib/modules/$m" || say "insmod $m failed"
done </modules.list
say "modules loaded at $(cut -d' ' -f1 /proc/uptime) s"

# cache=loose: the host's files do not change while the lab runs; this makes the test
# binaries load several times faster than cache=none.
mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=262144,cache=loose hostroot /host \
    || die "cannot mount the host root (9p tag hostroot)"
mount -t tmpfs -o mode=755 tmpfs /rw || die "cannot mount the tmpfs for the overlay"
mkdir -p /rw/upper /rw/work
mount -t overlay -o lowerdir=/host,upperdir=/rw/upper,workdir=/rw/work overlay /newroot \
    || die "cannot mount the overlay root"

R=/newroot
mount -t proc proc $R/proc || die "proc"
mount -t sysfs sysfs $R/sys || die "sysfs"
mount -t cgroup2 -o nsdelegate,nosuid,nodev,noexec cgroup2 $R/sys/fs/cgroup || die "cannot mount cgroup2"
for c in $(cat $R/sys/fs/cgroup/cgroup.controllers); do
    echo "+$c" >$R/sys/fs/cgroup/cgroup.subtree_control || say "cannot enable the $c controller"
done
mount -t devtmpfs devtmpfs $R/dev || die "devtmpfs"
mkdir -p $R/dev/pts $R/dev/shm
mount -t devpts -o newinstance,ptmxmode=0666,mode=620 devpts $R/dev/pts
ln -sf pts/ptmx $R/dev/ptmx 2>/dev/null
mount -t tmpfs -o mode=1777 tmpfs $R/dev/shm
# The job share first: its job.env names the workspace and target dir, which may lie under
# /tmp (a CI clone can) and would vanish under the guest's fresh tmpfs. Such paths are set
# aside from the overlay (writable) and put back on top of the tmpfs.
mkdir -p /jobshare
mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 vzlab /jobshare \
    || die "cannot mount the job share (9p tag vzlab)"
kept=""
for key in VZ_WORKSPACE CARGO_TARGET_DIR; do
    path=$(sed -n "s/^export $key='\(.*\)'\$/\1/p" /jobshare/job.env)
    case "$path" in /tmp/*) ;; *) continue ;; esac
    inside=""
    for k in $kept; do case "$path/" in "$k"/*) inside=1 ;; esac; done
    [ -n "$inside" ] && continue
    mkdir -p "/keep$path" && mount --bind "$R$path" "/keep$path" || die "cannot keep $path"
    kept="$kept $path"
done
mount -t tmpfs -o mode=1777 tmpfs $R/tmp
for path in $kept; do
    mkdir -p "$R$path" && mount --move "/keep$path" "$R$path" || die "cannot put back $path"
done
mount -t tmpfs -o mode=755 tmpfs $R/run
mkdir -p $R/vzlab
mount --move /jobshare $R/vzlab || die "cannot move the job share"
hostname vzlab
say "root ready at $(cut -d' ' -f1 /proc/uptime) s"

# switch_root's way, not a plain chroot: the new root is moved onto / and becomes the root of
# the mount namespace (a chrooted process may not make a user namespace, as vz's VEs need),
# and the initramfs keeps no mount of its own under it (a proc or sysfs left there would
# count as "fully visible" and let a VE's root mount a fresh one beside its masked view, as
# no real host's leftover mounts do). This shell keeps the initramfs as its root and needs
# nothing from those mounts for the poweroff below.
umount /proc /sys /dev || die "cannot unmount the initramfs's own proc, sysfs and dev"
(cd $R && mount --move $R / && exec chroot . /bin/bash /vzlab/run.sh)
say "run.sh exited with $?"
sync
poweroff -f
