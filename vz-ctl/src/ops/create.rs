//! `vzctl create`: a private area from a template cache, and CTID.conf from a sample
//! (reference §1.4). Any failure removes what was made: config, name link, private area.

use std::path::{Path, PathBuf};

use crate::config::{ConfigFile, VeConfig, sample_path};
use crate::ctid::{remove_names, set_name};
use crate::error::{CtlError, IoContext, Result};
use crate::intent::{self, Intent, crash_point};
use crate::output::say;
use crate::scripts;
use crate::undo::Undo;
use crate::ve::Ve;

/// Options of `vzctl create`.
#[derive(Debug, Default, Clone)]
pub struct CreateOptions {
    /// `--ostemplate`.
    pub ostemplate: Option<String>,
    /// `--config` (a sample name: `ve-<name>.conf-sample`).
    pub config: Option<String>,
    /// `--layout`.
    pub layout: Option<String>,
    /// `--private`.
    pub private: Option<String>,
    /// `--root`.
    pub root: Option<String>,
    /// `--hostname`.
    pub hostname: Option<String>,
    /// `--name`.
    pub name: Option<String>,
    /// `--description`.
    pub description: Option<String>,
    /// `--ipadd`, each occurrence.
    pub ipadd: Vec<String>,
    /// `--diskspace`.
    pub diskspace: Option<String>,
    /// `--diskinodes`.
    pub diskinodes: Option<String>,
    /// `--local_uid`/`--local_gid`: the host ids of the VE's root (else the pool's next).
    pub local_ids: Option<(u32, u32)>,
}

/// Creates the VE.
///
/// # Errors
/// OpenVZ's codes: 82 sample/config, 22–24 unset paths, 44 private exists, 29 no template,
/// 91 template not found, 48 private area, 131 name.
pub fn create(ve: &mut Ve, opts: &CreateOptions) -> Result<()> {
    let conf_path = ve.config_path();
    let (mut file, sample) = initial_config(ve, opts, &conf_path)?;
    for (key, value) in [
        ("VE_ROOT", &opts.root),
        ("VE_PRIVATE", &opts.private),
        ("HOSTNAME", &opts.hostname),
        ("DESCRIPTION", &opts.description),
    ] {
        if let Some(value) = value {
            file.set(key, value);
        }
    }
    let get = |key: &str| {
        file.get(key).map(str::to_owned).or_else(|| ve.global.get(key).map(str::to_owned))
    };
    let template_dir = get("TEMPLATE").ok_or(CtlError::KeyNotSet { key: "TEMPLATE", code: 24 })?;
    let private_raw =
        get("VE_PRIVATE").ok_or(CtlError::KeyNotSet { key: "VE_PRIVATE", code: 23 })?;
    let root_raw = get("VE_ROOT").ok_or(CtlError::KeyNotSet { key: "VE_ROOT", code: 22 })?;
    let private = PathBuf::from(crate::config::expand_veid(&private_raw, ve.ctid.get()));
    let root = PathBuf::from(crate::config::expand_veid(&root_raw, ve.ctid.get()));
    check_absolute("VE_PRIVATE", "private", opts.private.is_some(), &private)?;
    check_absolute("VE_ROOT", "root", opts.root.is_some(), &root)?;
    for (option, value) in [
        ("hostname", &opts.hostname),
        ("description", &opts.description),
        ("private", &opts.private),
        ("root", &opts.root),
    ] {
        if let Some(value) = value {
            super::set::check_value(option, value)?;
        }
    }
    if private.exists() && !is_empty_dir(&private) {
        return Err(CtlError::PrivateExists(private));
    }
    let ostemplate = opts
        .ostemplate
        .clone()
        .or_else(|| get("OSTEMPLATE"))
        .or_else(|| ve.global.def_ostemplate())
        .ok_or(CtlError::NoOsTemplate)?;
    let name: vz_template::TemplateName =
        ostemplate.parse().map_err(|e: vz_template::TemplateError| CtlError::BadParameter {
            option: "ostemplate".into(),
            value: ostemplate.clone(),
            reason: e.to_string(),
        })?;
    let cache = vz_template::CacheStore::new(Path::new(&template_dir))
        .find(&name)
        .map_err(|e| CtlError::TemplateNotFound(e.to_string()))?;
    let layout: vz_quota::Layout =
        match opts.layout.as_deref().map(str::to_owned).or_else(|| get("VE_LAYOUT")) {
            Some(text) => {
                text.parse().map_err(|e: vz_quota::QuotaError| CtlError::BadParameter {
                    option: "layout".into(),
                    value: text.clone(),
                    reason: e.to_string(),
                })?
            }
            // OpenVZ 4.x made ploop the default: the layout that enforces disk limits.
            None => vz_quota::Layout::Image,
        };
    let space = parse_opt(opts.diskspace.clone().or_else(|| get("DISKSPACE")), "diskspace")?;
    let inodes = parse_opt(opts.diskinodes.clone().or_else(|| get("DISKINODES")), "diskinodes")?;

    let addresses = super::net::parse_addresses(&opts.ipadd.join(" "))?;
    super::net::check_unique(ve, &addresses)?;

    // From here on every step is recorded: a create killed at any point is undone by the
    // next command that takes the lock (crate::intent).
    let _intent = Intent::begin(
        &ve.global,
        ve.ctid,
        "create",
        &[
            ("conf_existed", intent::flag(conf_path.exists())),
            ("private", private.display().to_string()),
            ("root", root.display().to_string()),
        ],
    )?;
    let mut undo = Undo::new();
    if let Some(name) = &opts.name {
        set_name(&ve.global.names_dir(), name, &conf_path)?;
        let (names, conf) = (ve.global.names_dir(), conf_path.clone());
        undo.push("name link", move || remove_names(&names, &conf).map_err(|e| e.to_string()));
        file.set("NAME", name);
    }
    say(format!("Creating container private area ({ostemplate})"));
    make_private_area(&private, &root, layout, space, inodes, &cache, &mut undo)?;

    if let Some(sample) = &sample {
        file.set("ORIGIN_SAMPLE", sample);
    }
    file.set("OSTEMPLATE", &ostemplate);
    file.set("VE_LAYOUT", &layout.to_string());
    if !addresses.is_empty() {
        file.set("IP_ADDRESS", &vz_ns::net::format_address_list(&addresses));
    }
    for (key, value) in
        [("DISKSPACE", space.map(|s| s.to_string())), ("DISKINODES", inodes.map(|i| i.to_string()))]
    {
        if let Some(value) = value {
            file.set(key, &value);
        }
    }
    // The paths as they are: sourcing CTID.conf must give them without $VEID expansion.
    file.set("VE_ROOT", &root.display().to_string());
    file.set("VE_PRIVATE", &private.display().to_string());
    if let Some(parent) = conf_path.parent() {
        std::fs::create_dir_all(parent).op("create config directory", parent)?;
    }
    // CTID.conf is first written here (keys that belong to it at create, e.g. an id range
    // allocated for the VE, are set on `file` above this line).
    file.write_atomic(&conf_path).map_err(CtlError::SaveConfig)?;
    let conf = conf_path.clone();
    undo.push("config", move || std::fs::remove_file(&conf).map_err(|e| e.to_string()));
    crash_point("create:config-written");
    *ve = Ve::load(ve.global.clone(), ve.ctid)?;
    // The VE's own host id range (LOCAL_UID/LOCAL_GID), recorded from the start.
    match opts.local_ids {
        Some((uid, gid)) => crate::idmap::assign(ve, uid, gid)?,
        None => crate::idmap::ensure(ve)?,
    };
    *ve = Ve::load(ve.global.clone(), ve.ctid)?;
    scripts::run_host_script(ve, "vps", "create")?;
    undo.commit();
    say("Container private area was created");
    Ok(())
}

/// The CT config to start from: a copy of the sample (`--config`, else vz.conf's
/// CONFIGFILE) with the sample's name, or an empty file.
fn initial_config(
    ve: &Ve,
    opts: &CreateOptions,
    conf_path: &Path,
) -> Result<(ConfigFile, Option<String>)> {
    if conf_path.exists() {
        // OpenVZ copies the sample first (§1.4 step 1): an existing config is 82 before the
        // private area is looked at.
        if opts.config.is_some() {
            return Err(CtlError::ConfigCopy(format!(
                "Container config file {} already exists",
                conf_path.display()
            )));
        }
        let private = ve.private().ok();
        if private.is_some_and(|p| p.exists() && !is_empty_dir(&p)) {
            return Err(CtlError::PrivateExists(ve.private()?));
        }
        return VeConfig::load(&ve.global, ve.ctid.get())
            .map_err(CtlError::Config)?
            .map(|c| (c.file().clone(), None))
            .ok_or(CtlError::NoConfig);
    }
    let (sample, from_option) = match (&opts.config, ve.global.configfile()) {
        (Some(name), _) => (name.clone(), true),
        (None, Some(name)) => (name, false),
        (None, None) => return Ok((ConfigFile::parse("").0, None)),
    };
    let path = sample_path(&ve.global, &sample);
    let file = ConfigFile::load(&path).map_err(|_| {
        CtlError::ConfigCopy(if from_option {
            format!("Sample config file {} not found", path.display())
        } else {
            format!(
                "Sample config file {} not found. Fix the value of CONFIGFILE in {}",
                path.display(),
                ve.global.path().display()
            )
        })
    })?;
    Ok((file, Some(sample)))
}

/// Makes the private area at `private` and unpacks the cache into it; records the undo
/// step. The config is written only after this, so an interrupted create leaves no VE.
fn make_private_area(
    private: &Path,
    root: &Path,
    layout: vz_quota::Layout,
    space: Option<vz_quota::DiskSpace>,
    inodes: Option<vz_quota::DiskInodes>,
    cache: &vz_template::Cache,
    undo: &mut Undo,
) -> Result<()> {
    if let Some(parent) = private.parent() {
        std::fs::create_dir_all(parent).op("create private area parent", parent)?;
    }
    let fail = |e: Box<dyn std::error::Error + Send + Sync>| CtlError::CreatePrivate(e);
    let area = vz_quota::PrivateArea::create(private, layout, space, inodes)
        .map_err(|e| fail(e.into()))?;
    let made = private.to_owned();
    undo.push("private area", move || {
        super::recover::remove_private(&made).map_err(|e| e.to_string())
    });
    crash_point("create:private-made");
    if !root.exists() {
        std::fs::create_dir_all(root).op("create VE_ROOT", root)?;
        let made = root.to_owned();
        undo.push("VE_ROOT", move || {
            super::recover::remove_empty_dir(&made);
            Ok(())
        });
    }
    if layout == vz_quota::Layout::Simfs {
        if space.is_some() || inodes.is_some() {
            crate::disk::warn_unenforced(&area);
        }
        let unpacked = cache.unpack_to(private).map(drop).map_err(|e| fail(e.into()));
        crash_point("create:unpacked");
        return unpacked;
    }
    area.mount(root).map_err(|e| fail(e.into()))?;
    crash_point("create:mounted");
    // mkfs.ext4 made lost+found; the template brings its own tree.
    let lost_found = root.join("lost+found");
    let unpacked = std::fs::remove_dir(&lost_found)
        .map_err(|e| fail(format!("remove {}: {e}", lost_found.display()).into()))
        .and_then(|()| cache.unpack_to(root).map_err(|e| fail(e.into())));
    crash_point("create:unpacked");
    vz_quota::PrivateArea::umount(root).map_err(|e| fail(e.into()))?;
    unpacked.map(drop)
}

fn parse_opt<T: std::str::FromStr>(value: Option<String>, option: &str) -> Result<Option<T>>
where
    T::Err: std::fmt::Display,
{
    value
        .map(|v| {
            v.parse().map_err(|e: T::Err| CtlError::BadParameter {
                option: option.to_owned(),
                value: v.clone(),
                reason: e.to_string(),
            })
        })
        .transpose()
}

fn is_empty_dir(path: &Path) -> bool {
    std::fs::read_dir(path).map(|mut d| d.next().is_none()).unwrap_or(false)
}

/// Refuses a relative VE_PRIVATE/VE_ROOT: 21 naming the option when it came from one, else
/// the key's own code (22/23).
fn check_absolute(key: &'static str, option: &str, from_option: bool, path: &Path) -> Result<()> {
    if path.is_absolute() {
        return Ok(());
    }
    let shown = path.display().to_string();
    Err(if from_option {
        CtlError::BadParameter {
            option: option.to_owned(),
            value: shown,
            reason: "must be an absolute path".into(),
        }
    } else {
        let code = if key == "VE_ROOT" { 22 } else { 23 };
        CtlError::NotAbsolute { key, path: shown, code }
    })
}
