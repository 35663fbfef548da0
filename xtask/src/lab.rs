//! The kernel lab's kernel: where scripts/install-deps unpacked Debian's linux-image package,
//! and which of its modules the guest loads, in dependency order (from `modules.dep`).

use anyhow::{Context, Result, bail};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

/// Where install-deps unpacks the kernel (`$VZ_LAB_CACHE`, default `/var/cache/vz-lab`).
pub(crate) fn cache_dir() -> PathBuf {
    std::env::var_os("VZ_LAB_CACHE")
        .map_or_else(|| PathBuf::from("/var/cache/vz-lab"), PathBuf::from)
}

/// Modules the lab cannot work without: the 9p root and overlay first, then what the
/// kernel tests drive (ext4 with quota, loop devices, veth and bridges).
const REQUIRED: &[&str] = &[
    "virtio_pci",
    "9pnet_virtio",
    "9p",
    "overlay",
    // ext4 asks the crypto API for crc32c at mount time; nothing in modules.dep says so.
    "crc32c_generic",
    "ext4",
    "quota_v2",
    "loop",
    "veth",
    "bridge",
];

/// Cheap extras for the network and checkpoint tests (a missing one is only a warning):
/// nftables and iptables inside a VE, CRIU's socket-diag modules, tun and dummy devices.
const OPTIONAL: &[&str] = &[
    // lxcfs, the VE's own /proc view (tests/tests/procview.rs).
    "fuse",
    "dummy",
    "tun",
    "nf_tables",
    "nft_compat",
    "nft_chain_nat",
    "nft_ct",
    "nft_nat",
    "nft_masq",
    "nft_reject_inet",
    "nf_conntrack_netlink",
    "ip_tables",
    "iptable_filter",
    "iptable_nat",
    "iptable_mangle",
    "ip6_tables",
    "ip6table_filter",
    "xt_conntrack",
    "xt_MASQUERADE",
    "xt_tcpudp",
    "xt_mark",
    "unix_diag",
    "inet_diag",
    "tcp_diag",
    "udp_diag",
    "raw_diag",
    "netlink_diag",
    "af_packet_diag",
];

/// An unpacked kernel package.
#[derive(Debug, Clone)]
pub(crate) struct Kernel {
    /// The package's unpacked root (`boot/`, `lib/modules/<version>/`).
    pub(crate) root: PathBuf,
    /// `uname -r` of the kernel, e.g. `6.1.0-56-amd64`.
    pub(crate) version: String,
    /// `boot/vmlinuz-<version>`.
    pub(crate) vmlinuz: PathBuf,
}

impl Kernel {
    /// Finds the kernel install-deps unpacked under `cache` (its `current` link).
    pub(crate) fn find(cache: &Path) -> Result<Kernel> {
        let hint = "run scripts/install-deps as root to fetch it";
        let root = cache.join("current");
        if !root.join(".complete").exists() {
            bail!("no lab kernel in {} ({hint})", root.display());
        }
        let version_file = root.join("KERNEL_VERSION");
        let version = std::fs::read_to_string(&version_file)
            .with_context(|| format!("cannot read {} ({hint})", version_file.display()))?
            .trim()
            .to_owned();
        let vmlinuz = root.join("boot").join(format!("vmlinuz-{version}"));
        if !vmlinuz.is_file() {
            bail!("the lab kernel {} is missing ({hint})", vmlinuz.display());
        }
        let root =
            root.canonicalize().with_context(|| format!("cannot resolve {}", root.display()))?;
        Ok(Kernel { root, version, vmlinuz })
    }

    /// `lib/modules/<version>`.
    pub(crate) fn module_dir(&self) -> PathBuf {
        self.root.join("lib/modules").join(&self.version)
    }

    /// The module files the guest loads, in load order (dependencies first), and warnings
    /// for optional modules this kernel lacks.
    pub(crate) fn modules(&self) -> Result<(Vec<PathBuf>, Vec<String>)> {
        let dir = self.module_dir();
        let read = |name: &str| {
            let path = dir.join(name);
            std::fs::read_to_string(&path).with_context(|| {
                format!(
                    "cannot read {} (scripts/install-deps makes it with depmod)",
                    path.display()
                )
            })
        };
        let deps = ModuleDeps::parse(&read("modules.dep")?);
        let builtin = builtin_names(&read("modules.builtin")?);
        let order = deps.load_order(REQUIRED, OPTIONAL, &builtin)?;
        let files = order.files.iter().map(|f| dir.join(f)).collect();
        let warnings = order
            .missing_optional
            .iter()
            .map(|m| format!("the lab kernel has no module {m}"))
            .collect();
        Ok((files, warnings))
    }
}

/// A module's name as the kernel spells it: file stem, `-` as `_`.
fn module_name(file: &str) -> String {
    let base = file.rsplit('/').next().unwrap_or(file);
    let stem = base.split(".ko").next().unwrap_or(base);
    stem.replace('-', "_")
}

fn builtin_names(text: &str) -> HashSet<String> {
    text.lines().filter(|l| !l.trim().is_empty()).map(module_name).collect()
}

/// `modules.dep`: module name → (its file, the files it depends on).
#[derive(Debug, Default)]
pub(crate) struct ModuleDeps {
    modules: HashMap<String, (String, Vec<String>)>,
}

/// The result of [`ModuleDeps::load_order`].
#[derive(Debug)]
pub(crate) struct LoadOrder {
    /// Module files relative to the module directory, dependencies before dependents.
    pub(crate) files: Vec<String>,
    /// Optional modules neither in modules.dep nor built in.
    pub(crate) missing_optional: Vec<String>,
}

impl ModuleDeps {
    /// Parses `modules.dep` (`kernel/fs/9p/9p.ko: kernel/net/9p/9pnet.ko …`).
    pub(crate) fn parse(text: &str) -> ModuleDeps {
        let mut modules = HashMap::new();
        for line in text.lines() {
            let Some((file, deps)) = line.split_once(':') else { continue };
            let deps = deps.split_whitespace().map(str::to_owned).collect();
            modules.insert(module_name(file), (file.to_owned(), deps));
        }
        ModuleDeps { modules }
    }

    /// The files to insmod for `required` and `optional` (by name), each after everything
    /// it depends on, each once; built-in modules are skipped.
    pub(crate) fn load_order(
        &self,
        required: &[&str],
        optional: &[&str],
        builtin: &HashSet<String>,
    ) -> Result<LoadOrder> {
        let mut order = LoadOrder { files: Vec::new(), missing_optional: Vec::new() };
        let mut done = HashSet::new();
        for (names, needed) in [(required, true), (optional, false)] {
            for name in names {
                let name = name.replace('-', "_");
                if builtin.contains(&name) {
                    continue;
                }
                match self.modules.get(&name) {
                    Some((file, _)) => self.visit(file, &mut done, &mut order.files, 0)?,
                    None if needed => bail!("the lab kernel has no module {name} (nor built in)"),
                    None => order.missing_optional.push(name),
                }
            }
        }
        Ok(order)
    }

    fn visit(
        &self,
        file: &str,
        done: &mut HashSet<String>,
        out: &mut Vec<String>,
        depth: usize,
    ) -> Result<()> {
        if depth > 64 {
            bail!("modules.dep has a dependency cycle through {file}");
        }
        if done.contains(file) {
            return Ok(());
        }
        if file.ends_with(".xz") || file.ends_with(".zst") || file.ends_with(".gz") {
            bail!("{file} is compressed; the lab's busybox insmod loads plain .ko files only");
        }
        let name = module_name(file);
        let deps = self.modules.get(&name).map(|(_, deps)| deps.clone()).unwrap_or_default();
        for dep in &deps {
            self.visit(dep, done, out, depth + 1)?;
        }
        done.insert(file.to_owned());
        out.push(file.to_owned());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEP: &str = "\
kernel/fs/9p/9p.ko: kernel/net/9p/9pnet.ko kernel/fs/fscache/fscache.ko kernel/fs/netfs/netfs.ko
kernel/net/9p/9pnet.ko:
kernel/fs/fscache/fscache.ko: kernel/fs/netfs/netfs.ko
kernel/fs/netfs/netfs.ko:
kernel/net/bridge/bridge.ko: kernel/net/802/stp.ko kernel/net/llc/llc.ko
kernel/net/802/stp.ko: kernel/net/llc/llc.ko
kernel/net/llc/llc.ko:
kernel/drivers/net/dummy-x.ko:
";

    #[test]
    fn dependencies_load_first_and_once() {
        let deps = ModuleDeps::parse(DEP);
        let order =
            deps.load_order(&["9p", "bridge"], &["dummy_x", "nope"], &HashSet::new()).unwrap();
        let pos = |f: &str| order.files.iter().position(|x| x.ends_with(f)).unwrap();
        assert!(pos("netfs.ko") < pos("fscache.ko"));
        assert!(pos("fscache.ko") < pos("9p.ko"));
        assert!(pos("9pnet.ko") < pos("9p.ko"));
        assert!(pos("llc.ko") < pos("stp.ko") && pos("stp.ko") < pos("bridge.ko"));
        assert_eq!(order.files.len(), 8);
        assert_eq!(order.missing_optional, ["nope"]);
    }

    #[test]
    fn missing_required_names_it_and_builtins_are_skipped() {
        let deps = ModuleDeps::parse(DEP);
        let err = deps.load_order(&["ext4"], &[], &HashSet::new()).unwrap_err();
        assert!(err.to_string().contains("ext4"), "{err}");
        let builtin = builtin_names("kernel/fs/ext4/ext4.ko\n");
        assert!(deps.load_order(&["ext4"], &[], &builtin).unwrap().files.is_empty());
    }

    #[test]
    fn the_installed_lab_kernel_has_every_required_module() {
        // The lab kernel is part of the project's setup (scripts/install-deps); without it
        // this test fails like every other missing need, naming the fix.
        let kernel = Kernel::find(&cache_dir()).unwrap();
        let (files, _) = kernel.modules().unwrap();
        for name in
            ["9p.ko", "overlay.ko", "ext4.ko", "quota_v2.ko", "loop.ko", "veth.ko", "bridge.ko"]
        {
            assert!(files.iter().any(|f| f.ends_with(name)), "{name} not in {files:?}");
        }
        assert!(files.iter().all(|f| f.is_file()));
    }
}
