//! Making an unprivileged VE: its namespaces owned by its own user namespace, its mounts
//! made by host root and locked against the VE's root.
//!
//! Three processes take part (the pid namespace's first process can only be forked by a
//! process in the VE's user namespace, and only host root can make mounts the VE cannot
//! undo):
//! 1. the host-root intermediate (this module's [`spawn`]) forks
//! 2. the maker, which unshares the user namespace, waits for the intermediate to write the
//!    id maps, makes the VE's time namespace ([`super::timens`]), becomes the VE's root,
//!    unshares the net, ipc, uts, cgroup, pid and mount namespaces (all owned by the new
//!    user namespace) and forks
//! 3. the VE's pid 1, which makes a detached proc mount of its pid namespace and hands it
//!    to the intermediate.
//!
//! The intermediate joins the VE's network namespace (for sysfs), unshares a mount namespace
//! of its own (owned by the host's user namespace), attaches there the idmapped root, pid
//! 1's proc, sysfs, /dev and the masks, pivots into the root, becomes the VE's root and
//! unshares the mount namespace once more: that copy belongs to the VE's user namespace, so
//! the kernel locks every mount in it (masks, read-only /proc/sys, nodev, the root) against
//! the VE. Pid 1 joins that namespace and goes on as any VE init ([`super::child`]).

use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};

use nix::sched::{CloneFlags, setns, unshare};
use nix::sys::wait::waitpid;
use nix::unistd::{ForkResult, Pid};

use super::ChildPlan;
use super::child::finish_init;
use super::sync::{Msg, Receiver, channel, send};
use crate::rootfs::{self, StepResult};
use crate::sys;
use crate::userns::{IdMap, become_ve_root, write_maps};

/// The namespaces the maker unshares once it is the VE's root.
const OWNED_BY_VE: CloneFlags = CloneFlags::CLONE_NEWNET
    .union(CloneFlags::CLONE_NEWIPC)
    .union(CloneFlags::CLONE_NEWUTS)
    .union(CloneFlags::CLONE_NEWCGROUP)
    .union(CloneFlags::CLONE_NEWPID)
    .union(CloneFlags::CLONE_NEWNS);

/// Makes the VE (see the module docs); returns the host pid of its init, which then waits
/// in [`finish_init`] for the parent's "go".
pub(super) fn spawn(
    plan: &ChildPlan,
    status: &OwnedFd,
    go: &OwnedFd,
    map: &IdMap,
    tree: OwnedFd,
) -> StepResult<i32> {
    // Limits while still host root (a hard limit can be raised): pid 1 inherits them.
    plan.rlimits.apply()?;
    // The host's /proc, kept for after the pivot (this process is not in the VE's pid
    // namespace, so the VE's /proc has no "self" for it).
    let host_proc = File::open("/proc").map_err(|e| format!("open /proc: {e}"))?;
    let (ours, theirs) = channel().map_err(|e| e.to_string())?;
    let maker = match sys::fork().map_err(|e| format!("fork the VE's maker: {e}"))? {
        ForkResult::Child => {
            drop(ours);
            maker(plan, status, go, &theirs)
        }
        ForkResult::Parent { child } => child,
    };
    drop(theirs);
    let mut rx = Receiver::new(ours.try_clone().map_err(|e| format!("dup a socket: {e}"))?);
    let expect = |rx: &mut Receiver| -> StepResult<Msg> {
        match rx.recv().map_err(|e| e.to_string())? {
            Some(Msg::SetupError(message)) => Err(message),
            Some(msg) => Ok(msg),
            None => Err("the VE's maker or init exited during setup".to_owned()),
        }
    };
    let result = (|| -> StepResult<(i32, OwnedFd)> {
        if !matches!(expect(&mut rx)?, Msg::Ready) {
            return Err("unexpected message from the VE's maker".to_owned());
        }
        write_maps(maker, map)?;
        send(&ours, &Msg::Ready);
        let (mut init, mut proc) = (None, None);
        while init.is_none() || proc.is_none() {
            match expect(&mut rx)? {
                Msg::Pid(pid) => init = Some(pid),
                Msg::Mount(fd) => proc = Some(fd),
                _ => return Err("unexpected message from the VE's init".to_owned()),
            }
        }
        Ok((init.unwrap_or_default(), proc.ok_or("no proc mount")?))
    })();
    let _ = waitpid(maker, None);
    let (init, proc) = result?;
    let ns = |name: &str| {
        let path = format!("/proc/{init}/ns/{name}");
        File::open(&path).map_err(|e| format!("open {path}: {e}"))
    };
    let userns: OwnedFd = ns("user")?.into();
    setns(ns("net")?.as_fd(), CloneFlags::CLONE_NEWNET)
        .map_err(|e| format!("join the VE's network namespace: {e}"))?;
    unshare(CloneFlags::CLONE_NEWNS).map_err(|e| format!("unshare a mount namespace: {e}"))?;
    sys::idmap_tree(tree.as_fd(), userns.as_fd())
        .map_err(|e| format!("idmap the VE's root {}: {e}", plan.root.display()))?;
    rootfs::enter_root(rootfs::RootView {
        root: &plan.root,
        tree: Some(tree),
        proc: Some(proc),
        id_map: Some(map),
        pty_max: plan.pty_max,
        quota_device: plan.quota_device.as_ref(),
        run_tmpfs: plan.run_tmpfs,
        proc_view: plan.proc_view.as_ref(),
        console: plan.console,
    })?;
    become_ve_root(&userns)?;
    unshare(CloneFlags::CLONE_NEWNS)
        .map_err(|e| format!("unshare the VE's own mount namespace: {e}"))?;
    let mnt = nix::fcntl::openat(
        host_proc.as_fd(),
        "self/ns/mnt",
        nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|e| format!("open the VE's mount namespace: {e}"))?;
    send(&ours, &Msg::MountNamespace(mnt));
    Ok(init)
}

/// The maker: the VE's user namespace, then the namespaces it owns, then pid 1.
fn maker(plan: &ChildPlan, status: &OwnedFd, go: &OwnedFd, sock: &OwnedFd) -> ! {
    let result = (|| -> StepResult<Pid> {
        unshare(CloneFlags::CLONE_NEWUSER)
            .map_err(|e| format!("unshare the user namespace: {e}"))?;
        send(sock, &Msg::Ready);
        let mut rx = Receiver::new(sock.try_clone().map_err(|e| format!("dup a socket: {e}"))?);
        if !matches!(rx.recv(), Ok(Some(Msg::Ready))) {
            return Err("the id maps were not written".to_owned());
        }
        // The VE's clocks, owned by its user namespace; still as host uid 0, whose own
        // /proc/self files it may write (setresuid below makes it non-dumpable).
        super::timens::clocks_from_zero()?;
        // The maps exist: become the VE's root, so what follows is owned by it.
        nix::unistd::setgroups(&[]).map_err(|e| format!("setgroups in the VE: {e}"))?;
        let root = nix::unistd::Gid::from_raw(0);
        nix::unistd::setresgid(root, root, root).map_err(|e| format!("setresgid 0: {e}"))?;
        let root = nix::unistd::Uid::from_raw(0);
        nix::unistd::setresuid(root, root, root).map_err(|e| format!("setresuid 0: {e}"))?;
        unshare(OWNED_BY_VE).map_err(|e| format!("unshare the VE's namespaces: {e}"))?;
        match sys::fork().map_err(|e| format!("fork the VE's init: {e}"))? {
            ForkResult::Child => ve_init(plan, status, go, sock),
            ForkResult::Parent { child } => Ok(child),
        }
    })();
    match result {
        Ok(init) => {
            send(sock, &Msg::Pid(init.as_raw()));
            sys::exit_now(0)
        }
        Err(message) => {
            send(sock, &Msg::SetupError(message));
            sys::exit_now(1)
        }
    }
}

/// The VE's pid 1 until it joins the mount namespace the intermediate made for it.
fn ve_init(plan: &ChildPlan, status: &OwnedFd, go: &OwnedFd, sock: &OwnedFd) -> ! {
    let setup = (|| -> StepResult {
        nix::unistd::setsid().map_err(|e| format!("setsid: {e}"))?;
        let proc = sys::fsmount_proc().map_err(|e| format!("make the VE's proc: {e}"))?;
        send(sock, &Msg::Mount(proc));
        let mut rx = Receiver::new(sock.try_clone().map_err(|e| format!("dup a socket: {e}"))?);
        let Ok(Some(Msg::MountNamespace(mnt))) = rx.recv() else {
            return Err("no mount namespace from the intermediate".to_owned());
        };
        setns(mnt.as_fd(), CloneFlags::CLONE_NEWNS)
            .map_err(|e| format!("join the VE's mount namespace: {e}"))?;
        nix::unistd::chdir("/").map_err(|e| format!("chdir / in the VE: {e}"))
    })();
    if let Err(message) = setup {
        send(status, &Msg::SetupError(message));
        sys::exit_now(1);
    }
    finish_init(plan, status, go)
}
