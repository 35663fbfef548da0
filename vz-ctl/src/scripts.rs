//! Action scripts (reference §1.6) and commands vz-ctl runs inside a VE.
//!
//! Host scripts `vps.<action>` and `<CTID>.<action>` in the config directory run with exactly
//! `VEID`, `VE_CONFFILE` and `PATH`; a non-zero exit fails the operation (exit 79). In-VE
//! scripts (`<CTID>.start`, `<CTID>.stop`) and vz's own setup snippets run inside the VE
//! through `vz_ns::enter`, so that nothing on the host follows a path the VE controls.

use std::process::Command;

use crate::error::{CtlError, IoContext, Result};
use crate::ve::Ve;

/// The `PATH` given to scripts and commands (OpenVZ's default).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Runs the host script `<conf dir>/<prefix>.<action>` if it exists.
///
/// # Errors
/// [`CtlError::ActionScript`] when it exits non-zero or cannot run.
pub fn run_host_script(ve: &Ve, prefix: &str, action: &str) -> Result<()> {
    let path = ve.global.conf_dir().join(format!("{prefix}.{action}"));
    if !path.is_file() {
        return Ok(());
    }
    tracing::info!("Running action script {}", path.display());
    let status = Command::new(&path)
        .env_clear()
        .env("VEID", ve.ctid.to_string())
        .env("VE_CONFFILE", ve.config_path())
        .env("PATH", DEFAULT_PATH)
        .status()
        .op("run action script", &path)?;
    if status.success() {
        Ok(())
    } else {
        Err(CtlError::ActionScript { path, status: status.to_string() })
    }
}

/// Runs the global then the per-CT host script of `action` (mount, premount, create).
///
/// # Errors
/// As [`run_host_script`].
pub fn run_global_then_ct(ve: &Ve, action: &str) -> Result<()> {
    run_host_script(ve, "vps", action)?;
    run_host_script(ve, &ve.ctid.to_string(), action)
}

/// Runs the per-CT then the global host script of `action` (umount, postumount).
///
/// # Errors
/// As [`run_host_script`].
pub fn run_ct_then_global(ve: &Ve, action: &str) -> Result<()> {
    run_host_script(ve, &ve.ctid.to_string(), action)?;
    run_host_script(ve, "vps", action)
}

/// The capability bounding set of the VE: the default of its kind (OpenVZ's mask for a
/// privileged VE, plus SYS_ADMIN in its own user namespace for an unprivileged one) with
/// `CAPABILITY` applied.
///
/// # Errors
/// [`CtlError::BadParameter`] for an unknown capability name.
pub fn capabilities(ve: &Ve, identity: crate::idmap::Identity) -> Result<vz_ns::CapSet> {
    let mut caps = if identity.id_map().is_some() {
        vz_ns::CapSet::user_namespace_default()
    } else {
        vz_ns::CapSet::openvz_default()
    };
    if let Some(key) = ve.get("CAPABILITY") {
        caps.apply_overrides(key).map_err(|e| CtlError::BadParameter {
            option: "capability".into(),
            value: key.into(),
            reason: e.to_string(),
        })?;
    }
    Ok(caps)
}

/// The identity CTID.conf records; a VE without a record (started by a vz before user
/// namespaces) is privileged.
fn recorded_identity(ve: &Ve) -> Result<crate::idmap::Identity> {
    Ok(crate::idmap::recorded(ve.config()?)?.unwrap_or(crate::idmap::Identity::Privileged))
}

/// The seccomp policy of the VE's processes: the default with `SYSCALLS` applied, no
/// netfilter at all for `NETFILTER=disabled`, and sysinfo answered by the VE's console
/// server unless `MEMINFO=none` ([`crate::sysinfo`]).
///
/// # Errors
/// [`CtlError::BadParameter`] for an entry that is not `name:on|off` of a denied call.
pub fn seccomp(ve: &Ve) -> Result<vz_ns::SeccompPolicy> {
    let mut policy = vz_ns::SeccompPolicy::default();
    if let Some(value) = ve.get("SYSCALLS") {
        policy.apply_overrides(value).map_err(|e| CtlError::BadParameter {
            option: "syscalls".into(),
            value: value.into(),
            reason: e.to_string(),
        })?;
    }
    if ve.get("NETFILTER").is_some_and(|v| v.trim() == "disabled") {
        policy.deny_netfilter();
    }
    if crate::sysinfo::intercepts(ve) {
        policy.intercept_sysinfo(crate::sysinfo::socket_path(ve));
    }
    Ok(policy)
}

/// Runs `argv` inside the running VE whose init is `init_pid`, with `env`; returns its exit
/// code.
///
/// # Errors
/// [`CtlError::Exec`] when the VE cannot be entered.
pub fn run_inside(
    ve: &Ve,
    init_pid: i32,
    argv: Vec<String>,
    env: Vec<(String, String)>,
    tty: vz_ns::TtyMode,
) -> Result<i32> {
    let spec = vz_ns::EnterSpec {
        init_pid,
        cgroup_procs: ve.cgroup()?.procs_files(),
        argv,
        env,
        caps: capabilities(ve, recorded_identity(ve)?)?,
        tty,
        rlimits: crate::resources::ve_rlimits(&crate::resources::ubc_in_force(|k| ve.get(k))?),
        quotactl_server: crate::quotactl::server_of_running(ve),
        seccomp: seccomp(ve)?,
    };
    vz_ns::enter(&spec).map_err(|e| CtlError::Exec(format!("cannot enter CT {}: {e}", ve.ctid)))
}

/// Runs a shell snippet inside the VE with extra environment variables; fails unless it
/// exits 0.
///
/// # Errors
/// [`CtlError::Exec`] naming `what` when the snippet fails.
pub fn run_snippet(
    ve: &Ve,
    init_pid: i32,
    what: &str,
    script: &str,
    vars: &[(&str, String)],
) -> Result<()> {
    let mut env = vec![("PATH".to_owned(), DEFAULT_PATH.to_owned())];
    env.extend(vars.iter().map(|(k, v)| ((*k).to_owned(), v.clone())));
    let argv = vec!["/bin/sh".to_owned(), "-c".to_owned(), script.to_owned()];
    match run_inside(ve, init_pid, argv, env, vz_ns::TtyMode::Pipes)? {
        0 => Ok(()),
        code => Err(CtlError::Exec(format!("{what} in CT {} exited with {code}", ve.ctid))),
    }
}

/// Runs the in-VE action script `<conf dir>/<CTID>.<action>` if it exists (its text is run
/// by the VE's `/bin/sh`).
///
/// # Errors
/// [`CtlError::ActionScript`] when it fails.
pub fn run_ve_script(ve: &Ve, init_pid: i32, action: &str) -> Result<()> {
    let path = ve.global.conf_dir().join(format!("{}.{action}", ve.ctid));
    if !path.is_file() {
        return Ok(());
    }
    let text = std::fs::read_to_string(&path).op("read action script", &path)?;
    run_snippet(ve, init_pid, action, &text, &[("VEID", ve.ctid.to_string())])
        .map_err(|e| CtlError::ActionScript { path: path.clone(), status: e.to_string() })
}
