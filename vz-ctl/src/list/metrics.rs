//! `vzmetrics`: every VE's beancounters, CPU, memory, disk quota and network counters in
//! Prometheus's text exposition format (version 0.0.4), for node-exporter's textfile
//! collector or any scraper that runs a command.
//!
//! A tool of its own rather than `vzlist --prometheus`: vzlist's contract is OpenVZ's
//! (fields, `-o`, `-s`, `-H`, exit codes of reference §4) and a metrics dump shares none of
//! it; the metrics carry data vzlist has no field for (CPU seconds, throttling, every
//! network device's counters), and a textfile collector wants an atomic file (`-o FILE`).
//! The numbers come from the same readers as vzlist's: vz-ubc's accounting (beancounters),
//! vz-sched (CPU), vz-quota (disk) and the VE's own `/proc/<init>/net/dev`.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::row::Row;
use super::usage::is_unlimited;
use crate::config::GlobalConfig;
use crate::ctid::Ctid;
use crate::error::Result;
use crate::resources;
use crate::ve::Ve;

/// Metric families in the order they are printed, collected sample by sample.
#[derive(Debug, Default)]
pub struct Exposition {
    families: BTreeMap<&'static str, Family>,
    order: Vec<&'static str>,
}

#[derive(Debug)]
struct Family {
    help: &'static str,
    kind: &'static str,
    samples: Vec<String>,
}

impl Exposition {
    /// Adds one sample of `name` (a gauge unless the name ends in `_total`).
    pub fn add(&mut self, name: &'static str, help: &'static str, labels: &[(&str, &str)], v: f64) {
        let kind = if name.ends_with("_total") { "counter" } else { "gauge" };
        let family = self.families.entry(name).or_insert_with(|| {
            self.order.push(name);
            Family { help, kind, samples: Vec::new() }
        });
        let labels: Vec<String> =
            labels.iter().map(|(k, val)| format!("{k}=\"{}\"", escape(val))).collect();
        family.samples.push(format!("{name}{{{}}} {}", labels.join(","), number(v)));
    }

    /// The text: `# HELP`, `# TYPE` and the samples of each family.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for name in &self.order {
            let f = &self.families[name];
            let _ = writeln!(out, "# HELP {name} {}", f.help);
            let _ = writeln!(out, "# TYPE {name} {}", f.kind);
            for s in &f.samples {
                out.push_str(s);
                out.push('\n');
            }
        }
        out
    }
}

/// A label value with `\`, `"` and newlines escaped.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// A sample value: integers without a fraction, `+Inf` for unlimited.
fn number(v: f64) -> String {
    if v.is_infinite() {
        return if v > 0.0 { "+Inf".to_owned() } else { "-Inf".to_owned() };
    }
    format!("{v}")
}

#[allow(clippy::cast_precision_loss, reason = "metric values are floats")]
fn float(v: u64) -> f64 {
    v as f64
}

/// A bound: `+Inf` when unlimited.
fn bound(v: u64) -> f64 {
    if is_unlimited(v) { f64::INFINITY } else { float(v) }
}

/// Collects the metrics of `ctids` (every VE with a config when empty).
///
/// # Errors
/// When the config directory or a VE's config cannot be read.
pub fn collect(global: &GlobalConfig, ctids: &[Ctid]) -> Result<Exposition> {
    let ids = if ctids.is_empty() { super::all_ctids(&global.conf_dir())? } else { ctids.to_vec() };
    let mut e = Exposition::default();
    for ctid in ids {
        let ve = Ve::load(global.clone(), ctid)?;
        if ve.config.is_none() {
            continue;
        }
        let cgroup = ve.cgroup()?;
        let running = cgroup.has_tasks();
        let init = if running { ve.init_pid().ok() } else { None };
        let cpu = if running {
            resources::sched_dirs(&cgroup).and_then(|d| vz_sched::read(&d).ok())
        } else {
            None
        };
        let row = Row::read(ve)?;
        ve_metrics(&mut e, &row, cpu.as_ref(), init);
    }
    Ok(e)
}

fn ve_metrics(e: &mut Exposition, row: &Row, cpu: Option<&vz_sched::CpuUsage>, init: Option<i32>) {
    let id = row.ctid.to_string();
    let ct: &[(&str, &str)] = &[("ctid", &id)];
    let running = row.status.running;
    e.add("vz_ve_running", "1 when the VE runs, else 0.", ct, if running { 1.0 } else { 0.0 });
    let info = [
        ("ctid", id.as_str()),
        ("status", row.status_word()),
        ("hostname", row.get("HOSTNAME").unwrap_or_default()),
        ("ostemplate", row.get("OSTEMPLATE").unwrap_or_default()),
    ];
    e.add("vz_ve_info", "The VE's status, host name and OS template (value 1).", &info, 1.0);
    if let Some(up) = row.uptime {
        e.add("vz_ve_uptime_seconds", "Seconds since the VE's init started.", ct, float(up));
    }
    if let Some(n) = row.nproc {
        #[allow(clippy::cast_precision_loss, reason = "a process count")]
        e.add("vz_ve_processes", "Processes in the VE's cgroup.", ct, n as f64);
    }
    if let Some(l) = row.laverage {
        e.add("vz_ve_load", "Runnable and uninterruptible threads of the VE now.", ct, l[0]);
    }
    let page = float(vz_ubc::page_size());
    for u in row.ubc.iter().flatten() {
        let unit = match u.resource.unit() {
            vz_ubc::UbUnit::Pages => "pages",
            vz_ubc::UbUnit::Bytes => "bytes",
            _ => "items",
        };
        let l = [("ctid", id.as_str()), ("resource", u.resource.name()), ("unit", unit)];
        e.add("vz_ubc_held", "Beancounter: current usage, in its unit.", &l, float(u.held));
        e.add("vz_ubc_maxheld", "Beancounter: peak usage, in its unit.", &l, float(u.maxheld));
        e.add("vz_ubc_barrier", "Beancounter: barrier (+Inf unlimited).", &l, bound(u.barrier));
        e.add("vz_ubc_limit", "Beancounter: limit (+Inf unlimited).", &l, bound(u.limit));
        e.add("vz_ubc_failcnt_total", "Beancounter: refusals counted.", &l, float(u.failcnt));
        let bytes = |v: u64| if is_unlimited(v) { f64::INFINITY } else { float(v) * page };
        match u.resource {
            vz_ubc::Resource::PhysPages => {
                e.add("vz_memory_usage_bytes", "RAM used by the VE.", ct, bytes(u.held));
                e.add("vz_memory_limit_bytes", "The VE's RAM limit.", ct, bytes(u.limit));
            }
            vz_ubc::Resource::SwapPages => {
                e.add("vz_swap_usage_bytes", "Swap used by the VE.", ct, bytes(u.held));
                e.add("vz_swap_limit_bytes", "The VE's swap limit.", ct, bytes(u.limit));
            }
            _ => {}
        }
    }
    if let Some(c) = cpu {
        let ns = 1e-9;
        e.add("vz_cpu_usage_seconds_total", "CPU time used by the VE.", ct, float(c.usage_ns) * ns);
        e.add(
            "vz_cpu_throttled_seconds_total",
            "Time the VE was held to its CPU limit.",
            ct,
            float(c.throttled_ns) * ns,
        );
        if let Some(units) = c.units {
            e.add("vz_cpu_units", "CPU weight (CPUUNITS).", ct, f64::from(units.get()));
        }
        let limit = c.quota_us.map_or(f64::INFINITY, |q| float(q) / float(c.period_us.max(1)));
        e.add("vz_cpu_limit_cpus", "CPU limit in CPUs (+Inf unlimited).", ct, limit);
    }
    if running && let Some(q) = row.quota() {
        let kib = |v: u64| if v == 0 { f64::INFINITY } else { float(v) * 1024.0 };
        let lim = |v: u64| if v == 0 { f64::INFINITY } else { float(v) };
        let (b, i) = (&q.blocks, &q.inodes);
        e.add("vz_disk_used_bytes", "Disk space used by the VE.", ct, float(b.usage) * 1024.0);
        e.add("vz_disk_soft_limit_bytes", "DISKSPACE soft limit.", ct, kib(b.soft));
        e.add("vz_disk_hard_limit_bytes", "DISKSPACE hard limit.", ct, kib(b.hard));
        e.add("vz_disk_inodes_used", "Inodes used by the VE.", ct, float(i.usage));
        e.add("vz_disk_inodes_soft_limit", "DISKINODES soft limit.", ct, lim(i.soft));
        e.add("vz_disk_inodes_hard_limit", "DISKINODES hard limit.", ct, lim(i.hard));
    }
    if let Some(pid) = init {
        let text = std::fs::read_to_string(format!("/proc/{pid}/net/dev")).unwrap_or_default();
        for (dev, c) in net_dev(&text) {
            let l = [("ctid", id.as_str()), ("device", dev.as_str())];
            e.add("vz_net_receive_bytes_total", "Bytes received by a VE device.", &l, c[0]);
            e.add("vz_net_receive_packets_total", "Packets received by a VE device.", &l, c[1]);
            e.add("vz_net_receive_drop_total", "Received packets dropped.", &l, c[3]);
            e.add("vz_net_transmit_bytes_total", "Bytes sent by a VE device.", &l, c[8]);
            e.add("vz_net_transmit_packets_total", "Packets sent by a VE device.", &l, c[9]);
            e.add("vz_net_transmit_drop_total", "Sent packets dropped.", &l, c[11]);
        }
    }
}

/// The devices of `/proc/net/dev` text and their 16 counters.
fn net_dev(text: &str) -> Vec<(String, [f64; 16])> {
    text.lines()
        .skip(2)
        .filter_map(|line| {
            let (dev, rest) = line.split_once(':')?;
            let nums: Vec<f64> =
                rest.split_whitespace().filter_map(|n| n.parse::<u64>().ok()).map(float).collect();
            Some((dev.trim().to_owned(), <[f64; 16]>::try_from(nums).ok()?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_have_help_type_and_escaped_labels() {
        let mut e = Exposition::default();
        e.add("vz_a_total", "A.", &[("ctid", "1")], 3.0);
        e.add("vz_b", "B.", &[("hostname", "x\"y\\z")], f64::INFINITY);
        e.add("vz_a_total", "A.", &[("ctid", "2")], 0.5);
        assert_eq!(
            e.render(),
            "# HELP vz_a_total A.\n# TYPE vz_a_total counter\nvz_a_total{ctid=\"1\"} 3\n\
             vz_a_total{ctid=\"2\"} 0.5\n# HELP vz_b B.\n# TYPE vz_b gauge\n\
             vz_b{hostname=\"x\\\"y\\\\z\"} +Inf\n"
        );
    }

    #[test]
    fn net_dev_reads_the_counters() {
        let text = "Inter-|   Receive  |  Transmit\n face |bytes packets\n    lo: 100 2 0 0 0 0 0 0 100 2 0 0 0 0 0 0\nvenet0: 5 1 0 1 0 0 0 0 7 3 0 2 0 0 0 0\n";
        let devs = net_dev(text);
        assert_eq!(devs.len(), 2);
        assert_eq!(devs[1].0, "venet0");
        assert_eq!((devs[1].1[0], devs[1].1[3], devs[1].1[8], devs[1].1[11]), (5.0, 1.0, 7.0, 2.0));
    }
}
