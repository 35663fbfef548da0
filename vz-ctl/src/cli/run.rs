//! Running a parsed vzctl invocation: load the configuration, take the lock, call the
//! operation, and turn the outcome into OpenVZ's exit code.

use std::path::PathBuf;

use super::defs::{self, Cmd};
use super::parse::{Action, Invocation};
use crate::config::{GlobalConfig, parse_yes_no};
use crate::ctid::Ctid;
use crate::disk::DiskChanges;
use crate::error::{CtlError, Result};
use crate::lock::Lock;
use crate::ops::{cpt, create, destroy, exec, mount, set, start, status, stop};
use crate::output::{result, say};
use crate::resources::{ResourceChanges, is_resource_option};
use crate::ve::Ve;

/// Runs `inv`; returns the process exit code.
///
/// # Errors
/// Any [`CtlError`]; the caller prints it and exits with [`CtlError::exit_code`].
pub fn run(inv: Invocation) -> Result<u8> {
    let Action::Run { cmd, ctid, options, rest } = inv.action else {
        return Ok(0);
    };
    let global = GlobalConfig::load().map_err(CtlError::GlobalConfig)?;
    let ctid = Ctid::resolve(&ctid, &global.names_dir())?;
    if ctid.is_host() {
        return Err(CtlError::BadCtid("0: only set actions are allowed for CT0".into()));
    }
    // The lock comes before the config is read (a read-modify-write such as set --save
    // must see the config the previous holder wrote), and repairs what a killed holder left.
    let _lock = if cmd.takes_lock() && !inv.skiplock {
        let lock = Lock::acquire(&global.lock_dir(), ctid, global.lock_wait())?;
        let recovered = crate::intent::recover(&global, ctid)?;
        if cmd == Cmd::Destroy && recovered.as_deref() == Some("destroy") {
            // The interrupted destroy was this command's work; it is done now.
            say("Container private area was destroyed");
            return Ok(0);
        }
        Some(lock)
    } else {
        None
    };
    let mut ve = Ve::load(global, ctid)?;
    if ve.config.is_none() && !matches!(cmd, Cmd::Create | Cmd::Status | Cmd::Destroy) {
        return Err(CtlError::NoConfig);
    }
    let opts = Options { cmd, given: options };
    match cmd {
        Cmd::Create => create::create(&mut ve, &opts.create()?)?,
        Cmd::Destroy => destroy::destroy(&ve)?,
        Cmd::Start => start_recorded(&ve, opts.start())?,
        Cmd::Chkpnt => cpt::chkpnt(&ve, &opts.chkpnt()?)?,
        Cmd::Restore => cpt::restore_cmd(
            &ve,
            opts.flag("resume"),
            opts.owned("dumpfile"),
            opts.flag("lazy-pages"),
        )?,
        Cmd::Stop => stop::stop(&ve, opts.stop())?,
        Cmd::Restart => {
            say("Restarting container");
            if ve.cgroup()?.has_tasks() {
                stop::stop(&ve, opts.stop())?;
            }
            start_recorded(&ve, opts.start())?;
        }
        Cmd::Status => result(status::status(&ve)?),
        Cmd::Mount => {
            mount::mount(&ve)?;
        }
        Cmd::Umount => mount::umount(&ve)?,
        Cmd::Set => set::set(&mut ve, &opts.set()?)?,
        Cmd::Exec => {
            return match exec::exec(&ve, &need_command(&rest)?) {
                Ok(0) => Ok(0),
                Ok(code) => Err(CtlError::Exec(format!("Command exited with status {code}"))),
                Err(CtlError::NotRunning) => Err(CtlError::Exec("Container is not running".into())),
                Err(e) => Err(CtlError::Exec(crate::error::chain(&e))),
            };
        }
        Cmd::Exec2 => {
            let code = exec::exec(&ve, &need_command(&rest)?)?;
            return Ok(u8::try_from(code).unwrap_or(255));
        }
        Cmd::Enter => {
            let command = opts.value("exec").map(|c| vec![c.to_owned()]);
            exec::enter(&ve, command.as_deref())?;
        }
        Cmd::Console => match rest.as_slice() {
            [] | [_] => crate::console::attach(&ve, rest.first().map(String::as_str))?,
            _ => {
                return Err(CtlError::Usage(format!(
                    "Invalid extra arguments: {}",
                    rest.join(" ")
                )));
            }
        },
        Cmd::Exec3 => {
            let code = crate::ops::exec3::exec3(&ve, &need_command(&rest)?)?;
            return Ok(u8::try_from(code).unwrap_or(255));
        }
        Cmd::Snapshot
        | Cmd::SnapshotSwitch
        | Cmd::SnapshotDelete
        | Cmd::SnapshotMount
        | Cmd::SnapshotUmount
        | Cmd::SnapshotList
        | Cmd::Compact
        | Cmd::Convert
        | Cmd::Quotaon
        | Cmd::Quotaoff
        | Cmd::Quotainit => super::run_more::run(&ve, cmd, &opts.given)?,
        Cmd::Runscript => {
            let [script] = rest.as_slice() else {
                return Err(CtlError::Usage("Usage: vzctl runscript <CTID> <script>".into()));
            };
            let code = exec::runscript(&ve, &PathBuf::from(script))?;
            return Ok(u8::try_from(code).unwrap_or(255));
        }
    }
    Ok(0)
}

/// `start` with its intent record (crate::intent): a start killed before its init runs is
/// undone by the next command; the record ends once the init is released.
fn start_recorded(ve: &Ve, opts: start::StartOptions) -> Result<()> {
    use crate::intent::{Intent, flag};
    let _intent = Intent::begin(
        &ve.global,
        ve.ctid,
        "start",
        &[("was_running", flag(ve.cgroup()?.has_tasks())), ("was_mounted", flag(ve.is_mounted()?))],
    )?;
    crate::ops::cpt::start_or_restore(ve, opts)
}

fn need_command(rest: &[String]) -> Result<Vec<String>> {
    if rest.is_empty() {
        return Err(CtlError::Usage("No command line given for exec".into()));
    }
    Ok(rest.to_vec())
}

/// The parsed options of one command.
struct Options {
    /// The command they were given to.
    cmd: Cmd,
    /// (canonical name, value), in command line order.
    given: Vec<(&'static str, Option<String>)>,
}

impl Options {
    /// The options named `name`. The name must be a canonical name of the option table for
    /// this command: a misspelled one fails the debug build's tests, not silently at run time.
    fn named(&self, name: &str) -> Vec<&Option<String>> {
        debug_assert!(
            defs::find(self.cmd, name).is_some_and(|o| o.name == name),
            "--{name} is not an option of vzctl {} in cli/defs.rs",
            self.cmd.name()
        );
        self.given.iter().filter(|(n, _)| *n == name).map(|(_, v)| v).collect()
    }

    /// The first value of `name` (OpenVZ: the first occurrence wins).
    fn value(&self, name: &str) -> Option<&str> {
        self.named(name).first().and_then(|v| v.as_deref())
    }

    fn owned(&self, name: &str) -> Option<String> {
        self.value(name).map(str::to_owned)
    }

    /// Every value of a repeatable option.
    fn all(&self, name: &str) -> Vec<String> {
        self.named(name).into_iter().filter_map(Clone::clone).collect()
    }

    fn flag(&self, name: &str) -> bool {
        !self.named(name).is_empty()
    }

    fn yes_no(&self, name: &str) -> Result<Option<bool>> {
        self.value(name)
            .map(|v| {
                parse_yes_no(name, v).map_err(|_| CtlError::BadParameter {
                    option: name.to_owned(),
                    value: v.to_owned(),
                    reason: "expected yes or no".into(),
                })
            })
            .transpose()
    }

    fn create(&self) -> Result<create::CreateOptions> {
        let id = |option: &str| -> Result<Option<u32>> {
            self.value(option)
                .map(|v| {
                    v.trim().parse::<u32>().map_err(|_| CtlError::BadParameter {
                        option: option.into(),
                        value: v.to_owned(),
                        reason: "expected a host id".into(),
                    })
                })
                .transpose()
        };
        // One of them given: the other is the same number, as a VE's uids and gids start
        // together in vz.conf's pool.
        let local_ids = match (id("local_uid")?, id("local_gid")?) {
            (Some(uid), Some(gid)) => Some((uid, gid)),
            (Some(one), None) | (None, Some(one)) => Some((one, one)),
            (None, None) => None,
        };
        Ok(create::CreateOptions {
            local_ids,
            ostemplate: self.owned("ostemplate"),
            config: self.owned("config"),
            layout: self.owned("layout"),
            private: self.owned("private"),
            root: self.owned("root"),
            hostname: self.owned("hostname"),
            name: self.owned("name"),
            description: self.owned("description"),
            ipadd: self.all("ipadd"),
            diskspace: self.owned("diskspace"),
            diskinodes: self.owned("diskinodes"),
        })
    }

    fn start(&self) -> start::StartOptions {
        start::StartOptions { wait: self.flag("wait"), force: self.flag("force") }
    }

    fn chkpnt(&self) -> Result<cpt::ChkpntOptions> {
        let stages = [
            ("suspend", cpt::Stage::Suspend),
            ("dump", cpt::Stage::Dump),
            ("resume", cpt::Stage::Resume),
            ("kill", cpt::Stage::Kill),
        ];
        let mut given = stages.iter().filter(|(name, _)| self.flag(name));
        let stage = given.next().map(|(_, stage)| *stage);
        if given.next().is_some() {
            return Err(CtlError::Usage(
                "Only one of --suspend, --dump, --resume, --kill can be given".into(),
            ));
        }
        let page_server =
            self.owned("page-server").map(|v| cpt::parse_page_server(&v)).transpose()?;
        Ok(cpt::ChkpntOptions {
            stage,
            dumpfile: self.owned("dumpfile").map(PathBuf::from),
            page_server,
            lazy_pages: self.flag("lazy-pages"),
            parent_images: self.owned("prev-images-dir"),
        })
    }

    fn stop(&self) -> stop::StopOptions {
        stop::StopOptions { fast: self.flag("fast"), skip_umount: self.flag("skip-umount") }
    }

    fn set(&self) -> Result<set::SetOptions> {
        let reset_ub = self.flag("reset_ub");
        if reset_ub && self.given.len() > 1 {
            return Err(CtlError::Usage("--reset_ub can not be used with other options".into()));
        }
        if self.flag("force") && !self.flag("save") {
            return Err(CtlError::Usage("--force can only be used with --save".into()));
        }
        let setmode = self.owned("setmode");
        if let Some(mode) = setmode.as_deref().filter(|m| !matches!(*m, "restart" | "ignore")) {
            return Err(CtlError::BadParameter {
                option: "setmode".into(),
                value: mode.into(),
                reason: "expected restart or ignore".into(),
            });
        }
        for pair in self.all("userpasswd") {
            if !pair.contains(':') || pair.starts_with(':') {
                return Err(CtlError::BadParameter {
                    option: "userpasswd".into(),
                    value: pair,
                    reason: "expected user:password".into(),
                });
            }
        }
        let mut resources = ResourceChanges::default();
        for (name, value) in &self.given {
            if let Some(value) = value.as_deref().filter(|_| is_resource_option(name)) {
                resources.parse_option(name, value)?;
            }
        }
        let mut disk = DiskChanges::default();
        for option in ["diskspace", "diskinodes", "quotatime", "quotaugidlimit"] {
            if let Some(value) = self.value(option) {
                disk.parse_option(option, value)?;
            }
        }
        let changes: Vec<(String, String)> =
            ["mac", "host_ifname", "host_mac", "bridge", "mac_filter"]
                .into_iter()
                .filter_map(|key| self.owned(key).map(|value| (key.to_owned(), value)))
                .collect();
        let netif_change = match self.owned("ifname") {
            Some(ifname) => Some((ifname, changes)),
            None if changes.is_empty() => None,
            None => {
                return Err(CtlError::Usage(
                    "--mac, --host_ifname, --host_mac, --bridge and --mac_filter need --ifname"
                        .into(),
                ));
            }
        };
        let mut paths = Vec::new();
        for (option, key) in [("root", "VE_ROOT"), ("private", "VE_PRIVATE")] {
            if let Some(path) = self.owned(option) {
                if !path.starts_with('/') {
                    return Err(CtlError::BadParameter {
                        option: option.into(),
                        value: path,
                        reason: "expected an absolute path".into(),
                    });
                }
                paths.push((key, path));
            }
        }
        let offline_resize = self.flag("offline-resize");
        if offline_resize && disk.space.is_none() {
            return Err(CtlError::Usage(
                "--offline-resize can only be used with --diskspace".into(),
            ));
        }
        Ok(set::SetOptions {
            resources,
            disk,
            ipadd: self.all("ipadd"),
            ipdel: self.all("ipdel"),
            netif_add: self.all("netif_add"),
            netif_del: self.all("netif_del"),
            netif_change,
            save: self.flag("save"),
            offline_resize,
            paths,
            disk_quota: self.yes_no("diskquota")?,
            reset_ub,
            setmode,
            hostname: self.owned("hostname"),
            nameserver: self.all("nameserver"),
            searchdomain: self.all("searchdomain"),
            onboot: self.yes_no("onboot")?,
            disabled: self.yes_no("disabled")?,
            name: self.owned("name"),
            description: self.owned("description"),
            userpasswd: self.all("userpasswd"),
            meminfo: self.value("meminfo").map(crate::procview::Meminfo::parse).transpose()?,
            params: crate::ops::set_params::ParamChanges::parse(&self.given)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every option name the commands read is a canonical name of the table (the debug
    /// assertion in `Options::named` fails otherwise).
    #[test]
    fn every_option_read_is_in_the_table() {
        let none = |cmd| Options { cmd, given: Vec::new() };
        none(Cmd::Create).create().unwrap();
        none(Cmd::Start).start();
        none(Cmd::Restart).start();
        none(Cmd::Stop).stop();
        none(Cmd::Restart).stop();
        none(Cmd::Set).set().unwrap();
        assert_eq!(none(Cmd::Enter).value("exec"), None);
        let set = Options { cmd: Cmd::Set, given: vec![("numproc", Some("10".into()))] };
        assert!(set.set().is_ok());
    }
}
