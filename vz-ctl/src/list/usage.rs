//! The beancounters of running VEs from vz's own accounting (vz-ubc measuring each VE's
//! cgroups), for the tools OpenVZ fed from `/proc/user_beancounters`: vzubc, vzmemcheck,
//! vzoversell and the metrics. A stock kernel has no such file and vz cannot add one to the
//! host's /proc; `vzubc --proc` prints the same text from this accounting instead.

use crate::config::GlobalConfig;
use crate::ctid::Ctid;
use crate::error::{CtlError, Result};
use crate::resources;
use crate::ve::Ve;
use vz_ubc::UNLIMITED;

/// The measured beancounters of `ctid` with the bounds its start applied, or `None` when it
/// is not running (or has no config, or no memory cgroup to read).
///
/// # Errors
/// When its config or a cgroup file cannot be read.
pub fn beancounters(global: &GlobalConfig, ctid: Ctid) -> Result<Option<Vec<vz_ubc::Usage>>> {
    let ve = Ve::load(global.clone(), ctid)?;
    if ve.config.is_none() {
        return Ok(None);
    }
    let cgroup = ve.cgroup()?;
    if !cgroup.has_tasks() {
        return Ok(None);
    }
    let config = resources::ubc_in_force(|k| ve.get(k))?;
    resources::ubc_usage(ctid.get(), &cgroup, config)
}

/// The beancounters of every running VE, by CTID.
///
/// # Errors
/// When the config directory or a running VE's data cannot be read.
pub fn all_beancounters(global: &GlobalConfig) -> Result<Vec<(u32, Vec<vz_ubc::Usage>)>> {
    let mut rows = Vec::new();
    for ctid in super::all_ctids(&global.conf_dir())? {
        if let Some(usage) = beancounters(global, ctid)? {
            rows.push((ctid.get(), usage));
        }
    }
    Ok(rows)
}

/// Host memory in bytes from `/proc/meminfo`: (MemTotal, SwapTotal).
///
/// # Errors
/// When /proc/meminfo cannot be read.
pub fn host_memory() -> Result<(u64, u64)> {
    let path = std::path::Path::new("/proc/meminfo");
    let text = std::fs::read_to_string(path).map_err(|source| CtlError::Io {
        op: "read",
        path: path.to_owned(),
        source,
    })?;
    let kb = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key)?.split_whitespace().next()?.parse::<u64>().ok())
            .unwrap_or(0)
            * 1024
    };
    Ok((kb("MemTotal:"), kb("SwapTotal:")))
}

/// Whether a bound is unlimited (LONG_MAX, or the 32-bit INT_MAX of old kernels).
pub fn is_unlimited(v: u64) -> bool {
    v >= UNLIMITED || v == u64::from(i32::MAX.unsigned_abs())
}

/// A value in human units (`hr` of OpenVZ's vzubc and vzoversell): `-` for 0 and unlimited, `*pages` in
/// bytes, then K, M, G… with three significant digits below 100.
pub fn human(pages: bool, v: u64, page_kb: u64) -> String {
    if v == 0 || is_unlimited(v) {
        return "- ".to_owned();
    }
    #[allow(clippy::cast_precision_loss, reason = "a display value")]
    let mut x = v as f64;
    let mut unit = 0;
    if pages {
        #[allow(clippy::cast_precision_loss, reason = "a page size")]
        let kb = page_kb as f64;
        x *= kb;
        unit += 1;
    }
    while x >= 1024.0 {
        x /= 1024.0;
        unit += 1;
    }
    let suffix = " KMGTPEZY".chars().nth(unit).unwrap_or('?');
    if x < 100.0 { format!("{}{suffix}", sig3(x)) } else { format!("{}{suffix}", x.trunc()) }
}

/// `%.3g`: three significant digits, trailing zeros dropped.
fn sig3(x: f64) -> String {
    let decimals = if x >= 10.0 { 1 } else { 2 };
    let text = format!("{x:.decimals$}");
    let text =
        if text.contains('.') { text.trim_end_matches('0').trim_end_matches('.') } else { &text };
    if text == "100" { "100".to_owned() } else { text.to_owned() }
}

/// A share in percent (`dp` of OpenVZ's vzubc and vzoversell): `-` for a zero or unlimited
/// bound or a zero share.
pub fn percent(part: u64, whole: u64) -> String {
    if whole == 0 || is_unlimited(whole) {
        return "- ".to_owned();
    }
    #[allow(clippy::cast_precision_loss, reason = "a display value")]
    let text = format!("{:.1}", part as f64 / whole as f64 * 100.0);
    let r = text.parse::<f64>().unwrap_or(0.0);
    // OpenVZ's awk compares that text with 10 as strings ("3.8" > "10"): one significant
    // digit (%.1g) only for what sorts before "10" (0.x, 1.x), else the integer part.
    let shown = if text.as_str() < "10" {
        format!("{}", format!("{r:.0e}").parse::<f64>().unwrap_or(r))
    } else {
        #[allow(clippy::cast_possible_truncation, reason = "a percentage")]
        let whole = r as i64;
        whole.to_string()
    };
    if shown.parse::<f64>().unwrap_or(0.0) == 0.0 { "- ".to_owned() } else { format!("{shown}%") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_units_are_openvz_hr() {
        assert_eq!(human(false, 0, 4), "- ");
        assert_eq!(human(false, UNLIMITED, 4), "- ");
        assert_eq!(human(false, 5, 4), "5 ");
        assert_eq!(human(false, 2_485_248, 4), "2.37M");
        assert_eq!(human(true, 65_536, 4), "256M");
        assert_eq!(human(false, 12_800, 4), "12.5K");
        assert_eq!(human(false, 500, 4), "500 ");
        assert_eq!(percent(1, 0), "- ");
        assert_eq!(percent(50, 100), "50%");
        assert_eq!(percent(5, 100), "5%");
        assert_eq!(percent(38, 1000), "3%", "awk's string comparison: 3.8 is not below \"10\"");
        assert_eq!(percent(15, 1000), "2%", "1.5 is: %.1g");
        assert_eq!(percent(1, 1000), "0.1%");
        assert_eq!(percent(0, 1000), "- ");
    }
}
