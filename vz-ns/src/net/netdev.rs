//! Host network devices handed to a VE whole (OpenVZ's `NETDEV`, `vzctl set --netdev_add` and
//! `--netdev_del`): the device is moved into the network namespace of the VE's init and back
//! with `RTM_NEWLINK` + `IFLA_NET_NS_FD`, as `ip link set DEV netns PID` does.
//!
//! A device keeps its name, addresses are flushed by the kernel on the move, and it is down in
//! its new namespace. When the VE's namespace goes away (the VE stops) the kernel hands a
//! physical device back to the initial namespace and deletes a virtual one (dummy, veth,
//! macvlan); `--netdev_del` on the running VE is the way to get a virtual device back.

use std::os::fd::AsRawFd;

use rtnetlink::LinkUnspec;

use super::{Netlink, check_ifname, errno, nl_err, ns_path, open_ns, own_netns};
use crate::error::{NsError, Result};

/// Names OpenVZ refuses to move: the VE's own venet, tun/tap devices and loopback.
const REFUSED_PREFIXES: [&str; 4] = ["venet", "tun", "tap", "lo"];

/// Checks a device name for `NETDEV`: a valid interface name not starting with `venet`,
/// `tun`, `tap` or `lo` (OpenVZ's rule).
///
/// # Errors
/// [`NsError::BadNetif`] naming the reason.
pub fn check_netdev_name(name: &str) -> Result<()> {
    check_ifname("netdev", name)?;
    if let Some(prefix) = REFUSED_PREFIXES.iter().find(|p| name.starts_with(*p)) {
        return Err(NsError::BadNetif {
            field: "netdev",
            value: name.to_owned(),
            reason: format!("devices named {prefix}* can not be moved into a container"),
        });
    }
    Ok(())
}

/// Moves the device `name` of the calling thread's network namespace ("the host") into the
/// network namespace of the VE whose init is `init_pid`.
///
/// # Errors
/// [`NsError::BadNetif`] for a refused name, [`NsError::NoSuchDevice`] when the host has no
/// such device, [`NsError::Netlink`] when the kernel refuses the move (e.g. the VE has a
/// device of that name, `EEXIST`).
///
/// # Privileges
/// CAP_NET_ADMIN on the host and in the VE's namespace's owner (host root).
pub fn move_netdev_in(init_pid: i32, name: &str) -> Result<()> {
    check_netdev_name(name)?;
    let host = Netlink::host()?;
    let index = host.index_of(name)?;
    let target = open_ns(&ns_path(init_pid))?;
    let set = LinkUnspec::new_with_index(index).setns_by_fd(target.as_raw_fd()).build();
    host.run(host.handle().link().set(set).execute())
        .map_err(|e| nl_err("move into the VE", format!("{name} (VE {init_pid})"), e))?;
    tracing::debug!(name, init_pid, "netdev moved into the VE");
    Ok(())
}

/// Moves the device `name` from the VE whose init is `init_pid` back to the calling thread's
/// network namespace. A device the VE no longer has is not an error when the host has it
/// already (moved back before).
///
/// # Errors
/// [`NsError::NoSuchDevice`] when neither side has it, [`NsError::Netlink`] when the kernel
/// refuses (`EEXIST`: the host has another device of that name now).
///
/// # Privileges
/// As [`move_netdev_in`].
pub fn move_netdev_out(init_pid: i32, name: &str) -> Result<()> {
    check_ifname("netdev", name)?;
    let ve = Netlink::in_netns_of(init_pid)?;
    let Some(link) = ve.link_by_name(name)? else {
        return if Netlink::host()?.link_by_name(name)?.is_some() {
            Ok(())
        } else {
            Err(NsError::NoSuchDevice { name: name.to_owned() })
        };
    };
    let own = own_netns()?;
    let set = LinkUnspec::new_with_index(link.header.index).setns_by_fd(own.as_raw_fd()).build();
    match ve.run(ve.handle().link().set(set).execute()) {
        Err(e) if errno(&e) == Some(libc::EEXIST) => Err(super::host_name_taken(name)),
        r => r.map_err(|e| nl_err("move to the host", format!("{name} (VE {init_pid})"), e)),
    }?;
    tracing::debug!(name, init_pid, "netdev moved back to the host");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openvz_refused_names() {
        for bad in ["venet0", "tun0", "tap3", "lo", "", "a/b", "sixteen-chars-xx"] {
            assert!(check_netdev_name(bad).is_err(), "{bad}");
        }
        for good in ["eth1", "dummy0", "ens3", "vz-t1"] {
            check_netdev_name(good).expect(good);
        }
    }
}
