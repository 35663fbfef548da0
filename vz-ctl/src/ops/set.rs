//! `vzctl set`: change settings of a VE, at once on a running VE and, with `--save`, in
//! CTID.conf (reference §1.5). The config is written only after every live change worked.

use crate::ctid::{remove_names, set_name};
use crate::disk::DiskChanges;
use crate::error::{CtlError, Result};
use crate::intent::{self, Intent, crash_point};
use crate::ops::net;
use crate::ops::set_params::ParamChanges;
use crate::output::say;
use crate::resources::{self, ResourceChanges};
use crate::setup;
use crate::ve::Ve;

/// Options of `vzctl set`.
#[derive(Debug, Default, Clone)]
pub struct SetOptions {
    /// `--save`.
    pub save: bool,
    /// `--root`, `--private`: new VE_ROOT, VE_PRIVATE (a stopped, unmounted VE's).
    pub paths: Vec<(&'static str, String)>,
    /// `--offline-resize`: `--diskspace` on a stopped, unmounted VE only.
    pub offline_resize: bool,
    /// `--diskquota yes|no` (`DISK_QUOTA`, restart-required).
    pub disk_quota: Option<bool>,
    /// `--reset_ub`: put every beancounter of the config into effect again (used alone).
    pub reset_ub: bool,
    /// `--setmode restart|ignore`.
    pub setmode: Option<String>,
    /// `--hostname`.
    pub hostname: Option<String>,
    /// `--nameserver`, each occurrence (all replace the old list).
    pub nameserver: Vec<String>,
    /// `--searchdomain`, each occurrence.
    pub searchdomain: Vec<String>,
    /// `--onboot yes|no`.
    pub onboot: Option<bool>,
    /// `--disabled yes|no`.
    pub disabled: Option<bool>,
    /// `--name`.
    pub name: Option<String>,
    /// `--description`.
    pub description: Option<String>,
    /// `--userpasswd user:pass`, each occurrence (never saved).
    pub userpasswd: Vec<String>,
    /// Beancounter and CPU options (`--numproc`, `--ram`, `--cpuunits`…), parsed.
    pub resources: ResourceChanges,
    /// Disk limits (`--diskspace`, `--diskinodes`, `--quotatime`, `--quotaugidlimit`).
    pub disk: DiskChanges,
    /// `--ipadd`, each occurrence.
    pub ipadd: Vec<String>,
    /// `--ipdel`, each occurrence (`all` removes every address).
    pub ipdel: Vec<String>,
    /// `--netif_add`, each occurrence.
    pub netif_add: Vec<String>,
    /// `--netif_del`, each occurrence (`all` removes every interface).
    pub netif_del: Vec<String>,
    /// `--ifname IF` with the changes of `--mac`, `--host_ifname`, `--host_mac`, `--bridge`,
    /// `--mac_filter` (key as in NETIF, value).
    pub netif_change: Option<(String, Vec<(String, String)>)>,
    /// `--meminfo`: the VE's /proc/meminfo from its next start (`crate::procview`).
    pub meminfo: Option<crate::procview::Meminfo>,
    /// Capabilities, devices, features, I/O, boot order, stop timeout, netfilter, network
    /// devices, NUMA nodes, `--applyconfig` (`set_params.rs`).
    pub params: ParamChanges,
}

impl SetOptions {
    /// The CTID.conf keys and values this set changes.
    fn config_changes(&self) -> Vec<(&'static str, String)> {
        let yes_no = |b: bool| if b { "yes" } else { "no" }.to_owned();
        let mut changes = Vec::new();
        if let Some(h) = &self.hostname {
            changes.push(("HOSTNAME", h.clone()));
        }
        if !self.nameserver.is_empty() {
            changes.push(("NAMESERVER", self.nameserver.join(" ")));
        }
        if !self.searchdomain.is_empty() {
            changes.push(("SEARCHDOMAIN", self.searchdomain.join(" ")));
        }
        if let Some(b) = self.onboot {
            changes.push(("ONBOOT", yes_no(b)));
        }
        if let Some(b) = self.disabled {
            changes.push(("DISABLED", yes_no(b)));
        }
        if let Some(b) = self.disk_quota {
            changes.push(("DISK_QUOTA", yes_no(b)));
        }
        changes.extend(self.paths.iter().cloned());
        if let Some(n) = &self.name {
            changes.push(("NAME", n.clone()));
        }
        if let Some(d) = &self.description {
            changes.push(("DESCRIPTION", d.clone()));
        }
        changes.extend(self.meminfo.map(|m| ("MEMINFO", m.to_string())));
        changes.extend(self.resources.saved.iter().cloned());
        changes.extend(self.disk.saved());
        changes
    }
}

/// Applies `opts` to the VE. The caller holds its lock.
///
/// # Errors
/// 20 for `--setmode restart` without `--save` and for `--name` without `--save` (131),
/// 28 for a VSwap config without SWAPPAGES, 31 when live settings need a running VE, 74 for passwords, 1 when a beancounter and 2 when
/// a CPU parameter cannot be applied to the running VE, 62 when a disk limit cannot be
/// applied, 139 when saving fails.
pub fn set(ve: &mut Ve, opts: &SetOptions) -> Result<()> {
    ve.config()?;
    if opts.reset_ub {
        return reset_ub(ve);
    }
    if !opts.resources.ubc.is_empty() {
        let mut result = resources::ubc_config(|k| ve.get(k))?;
        for (resource, value) in opts.resources.ubc.iter() {
            result.set(resource, value);
        }
        resources::check_vswap(&result)?;
    }
    if opts.setmode.as_deref() == Some("restart") && !opts.save {
        return Err(CtlError::Usage("--setmode restart requires --save".into()));
    }
    if opts.name.is_some() && !opts.save {
        return Err(CtlError::Name("Error: unable to use --name option without --save".into()));
    }
    if opts.params.stop_timeout.is_some() && !opts.save {
        return Err(CtlError::Usage("--stop-timeout requires --save".into()));
    }
    let applied = super::set_apply::sample_changes(ve, opts)?;
    let mut resources = applied.resources;
    let param_saved = opts.params.saved(|k| ve.get(k));
    if let Some(mask) = resources.cpu.mask.take() {
        let nodemask = opts.params.nodemask.as_deref().or_else(|| ve.get("NODEMASK"));
        resources.cpu.mask = Some(resources::resolve_auto_mask(mask, nodemask)?);
    }
    for (key, value) in opts.config_changes().iter().chain(&param_saved) {
        check_value(&key.to_lowercase(), value)?;
    }
    let mut net =
        net::NetPlan::new(ve, &opts.ipadd, &opts.ipdel, &opts.netif_add, &opts.netif_del)?;
    if let Some((ifname, changes)) = &opts.netif_change {
        net.change_netif(ve, ifname, changes)?;
    }
    let running = ve.cgroup()?.has_tasks();
    if opts.offline_resize || !opts.paths.is_empty() {
        if running {
            return Err(CtlError::AlreadyRunning);
        }
        if ve.is_mounted()? {
            return Err(CtlError::Mounted);
        }
    }
    let _intent = Intent::begin(
        &ve.global,
        ve.ctid,
        "set",
        &[("was_running", intent::flag(running)), ("was_mounted", intent::flag(ve.is_mounted()?))],
    )?;
    let restart = running && (opts.params.needs_restart() || opts.disk_quota.is_some());
    if restart && opts.setmode.as_deref() == Some("ignore") {
        return Err(CtlError::Param {
            code: 32,
            message: "Unable to apply parameters that need a restart to a running container \
                      (--setmode ignore)"
                .into(),
        });
    }
    if running {
        apply_live(ve, opts, &resources)?;
        net.apply_live(ve, ve.init_pid()?)?;
        super::set_live::apply_live(ve, ve.init_pid()?, &opts.params, &param_saved)?;
        if restart && opts.setmode.is_none() {
            say("WARNING: Some of the parameters could not be applied to a running container. \
                 Please consider using --setmode option");
        }
    } else if !opts.save && (has_live_settings(opts) || !net.is_empty() || opts.params.has_live()) {
        return Err(CtlError::NotRunning);
    }
    if !opts.userpasswd.is_empty() && !running {
        set_password_stopped(ve, &opts.userpasswd)?;
    }
    if !running && opts.save {
        // A stopped VE's image is resized offline (OpenVZ resizes ploop images on --save).
        opts.disk.apply(ve, false)?;
    }
    let sample_saved = applied.saved;
    let mut changes = opts.config_changes();
    changes.extend(resources.saved.iter().cloned());
    changes.extend(param_saved);
    changes.extend(net.saved());
    if !opts.save {
        if !changes.is_empty() || !sample_saved.is_empty() {
            let lost = if running { " and will be lost after CT restart" } else { "" };
            say(format!("WARNING: Settings were not saved to config (use --save flag){lost}"));
        }
        return Ok(());
    }
    if changes.is_empty() && sample_saved.is_empty() {
        say("No changes in CT configuration, not saving");
        return Ok(());
    }
    if let Some(name) = &opts.name {
        let conf = ve.config_path();
        if ve.config()?.name().is_some_and(|old| old != name) {
            remove_names(&ve.global.names_dir(), &conf)?;
        }
        set_name(&ve.global.names_dir(), name, &conf)?;
        crash_point("set:name-linked");
        say(format!("Name {name} assigned"));
    }
    let config = ve.config.as_mut().ok_or(CtlError::NoConfig)?;
    for (key, value) in &sample_saved {
        config.file_mut().set(key, value);
    }
    for (key, value) in &changes {
        config.file_mut().set(key, value);
    }
    config.save().map_err(CtlError::SaveConfig)?;
    crash_point("set:saved");
    say(format!("CT configuration saved to {}", config.path().display()));
    if opts.params.applyconfig_map {
        super::set_apply::restore_name_link(ve)?;
    }
    if restart && opts.setmode.as_deref() == Some("restart") {
        say("Restarting container");
        super::stop::stop(ve, super::stop::StopOptions::default())?;
        super::start::start(ve, super::start::StartOptions::default())?;
    }
    Ok(())
}

/// `--reset_ub`: the config's beancounters, with the VSwap defaults, on the running VE.
fn reset_ub(ve: &Ve) -> Result<()> {
    let cgroup = ve.cgroup()?;
    if !cgroup.has_tasks() {
        return Err(CtlError::NotRunning);
    }
    let ubc = resources::ubc_at_start(|k| ve.get(k))?;
    resources::apply_ubc(ve.ctid.get(), &cgroup, &ubc, Some(ve.init_pid()?))?;
    say("UB limits were set successfully");
    Ok(())
}

fn has_live_settings(opts: &SetOptions) -> bool {
    opts.hostname.is_some()
        || !opts.nameserver.is_empty()
        || !opts.searchdomain.is_empty()
        || !opts.resources.is_empty()
        || !opts.disk.is_empty()
}

fn apply_live(ve: &Ve, opts: &SetOptions, resources: &ResourceChanges) -> Result<()> {
    let pid = ve.init_pid()?;
    apply_resources(ve, pid, resources)?;
    opts.disk.apply(ve, true)?;
    if opts.hostname.is_some() || !opts.nameserver.is_empty() || !opts.searchdomain.is_empty() {
        let files = setup::VeFiles::open(&ve.root()?, &ve.ctid.to_string())?;
        if let Some(hostname) = &opts.hostname {
            vz_ns::set_hostname(pid, hostname).map_err(|e| {
                CtlError::Exec(format!("setting the hostname in CT {}: {e}", ve.ctid))
            })?;
            let ips = ve.config()?.ip_addresses();
            files.set_hostname(hostname, ips.first().map(String::as_str))?;
        }
        if !opts.nameserver.is_empty() || !opts.searchdomain.is_empty() {
            let ns = setup::resolve_inherit(&opts.nameserver, "nameserver");
            let search = setup::resolve_inherit(&opts.searchdomain, "search");
            files.set_dns(&ns, &search)?;
        }
    }
    if !opts.userpasswd.is_empty() {
        set_passwords(ve, pid, &opts.userpasswd)?;
    }
    Ok(())
}

/// Puts changed beancounters and CPU settings into effect on the running VE at once.
fn apply_resources(ve: &Ve, pid: i32, changes: &ResourceChanges) -> Result<()> {
    if changes.is_empty() {
        return Ok(());
    }
    let cgroup = ve.cgroup()?;
    let ctid = ve.ctid.get();
    resources::apply_ubc(ctid, &cgroup, &changes.ubc, Some(pid))?;
    if changes.cpu != vz_sched::CpuSettings::default() {
        let config = resources::cpu_config(|k| ve.get(k))?;
        resources::apply_cpu(ctid, &cgroup, &resources::cpu_live(&changes.cpu, &config))?;
    }
    Ok(())
}

/// Sets passwords in a stopped VE, in its namespaces without booting it.
fn set_password_stopped(ve: &Ve, pairs: &[String]) -> Result<()> {
    super::stopped::with_pending_init(ve, |pid| set_passwords(ve, pid, pairs))
}

/// Sets passwords in the VE whose init is `pid` (its own failure code, 74).
fn set_passwords(ve: &Ve, pid: i32, pairs: &[String]) -> Result<()> {
    let mut snippets = setup::Snippets::new();
    snippets.userpasswd(pairs);
    snippets.run(ve, pid).map_err(|e| CtlError::Password(e.to_string()))
}

/// Refuses a value that has no form in a config file (a line break, NUL) with exit 21,
/// naming the option; every other value is written quoted so that sh reads it back as is.
///
/// # Errors
/// [`CtlError::BadParameter`].
pub(crate) fn check_value(option: &str, value: &str) -> Result<()> {
    match crate::config::unrepresentable(value) {
        None => Ok(()),
        Some(reason) => Err(CtlError::BadParameter {
            option: option.to_owned(),
            value: value.escape_debug().to_string(),
            reason: reason.to_owned(),
        }),
    }
}
