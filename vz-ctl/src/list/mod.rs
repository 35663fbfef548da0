//! `vzlist`: which VEs exist and their parameters, as a table or JSON (reference §4).

pub mod fields;
pub mod metrics;
pub mod render;
pub mod row;
pub mod usage;

use std::path::Path;

use crate::config::GlobalConfig;
use crate::ctid::Ctid;
use crate::error::{CtlError, Result};
use crate::ve::Ve;
use fields::Field;
use row::Row;

/// The default columns.
pub const DEFAULT_FIELDS: &[&str] = &["ctid", "numproc", "status", "ip", "hostname"];

/// Which VEs to list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    /// Running only (the default).
    Running,
    /// All (`-a`).
    All,
    /// Not running (`-S`).
    Stopped,
}

/// Every CTID that has a `<CTID>.conf` in the config directory, sorted.
///
/// # Errors
/// When the directory exists but cannot be read.
pub fn all_ctids(conf_dir: &Path) -> Result<Vec<Ctid>> {
    let entries = match std::fs::read_dir(conf_dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(CtlError::Io { op: "read", path: conf_dir.to_owned(), source }),
    };
    let mut ids: Vec<Ctid> = entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.strip_suffix(".conf")?.parse().ok())
        .filter(|c: &Ctid| !c.is_host())
        .collect();
    ids.sort();
    Ok(ids)
}

/// Reads the rows of `ctids` (or of every VE), filtered by `which`.
///
/// # Errors
/// When a VE's state cannot be read (the first such VE).
pub fn rows(global: &GlobalConfig, ctids: &[Ctid], which: Which) -> Result<Vec<Row>> {
    let (rows, mut failed) = rows_or_errors(global, ctids, which)?;
    match failed.is_empty() {
        true => Ok(rows),
        false => Err(failed.swap_remove(0).1),
    }
}

/// A VE whose row could not be read, and why.
pub type RowError = (Ctid, crate::error::CtlError);

/// Like [`rows`], but a VE whose config or state cannot be read fails alone: its error is
/// returned beside the other VEs' rows (a config that cannot be parsed names its file,
/// line and reason).
///
/// # Errors
/// When the config directory cannot be read.
pub fn rows_or_errors(
    global: &GlobalConfig,
    ctids: &[Ctid],
    which: Which,
) -> Result<(Vec<Row>, Vec<RowError>)> {
    let ids = if ctids.is_empty() { all_ctids(&global.conf_dir())? } else { ctids.to_vec() };
    let mut rows = Vec::new();
    let mut failed = Vec::new();
    for ctid in ids {
        let row = Ve::load(global.clone(), ctid).and_then(|ve| match ve.config {
            None => Ok(None),
            Some(_) => Row::read(ve).map(Some),
        });
        let row = match row {
            Ok(Some(row)) => row,
            Ok(None) => continue,
            Err(e) => {
                failed.push((ctid, e));
                continue;
            }
        };
        let keep = match which {
            Which::Running => row.status.running,
            Which::All => true,
            Which::Stopped => !row.status.running,
        };
        if keep {
            rows.push(row);
        }
    }
    Ok((rows, failed))
}

/// Resolves `-o` names to fields.
///
/// # Errors
/// `Unknown field: X` (exit 1 in vzlist).
pub fn fields(names: &[&str]) -> std::result::Result<Vec<&'static Field>, String> {
    names.iter().map(|n| fields::find(n).ok_or_else(|| format!("Unknown field: {n}"))).collect()
}

/// The number a value sorts by, if it is one (a laverage sorts by its first element).
fn numeric(value: &fields::Value) -> Option<f64> {
    #[allow(clippy::cast_precision_loss, reason = "sorting only")]
    match value {
        fields::Value::Num(n) => n.map(|n| n as f64),
        fields::Value::Object { shown, .. } => shown.map(|n| n as f64),
        fields::Value::Shown { json, .. } => {
            json.as_f64().or_else(|| json.as_array()?.first()?.as_f64())
        }
        _ => None,
    }
}

/// Sorts rows by a field; `-name` reverses.
///
/// # Errors
/// `Invalid sort field name: X`.
pub fn sort(rows: &mut [Row], spec: &str) -> std::result::Result<(), String> {
    let (name, reverse) = match spec.strip_prefix('-') {
        Some(n) => (n, true),
        None => (spec, false),
    };
    let field = fields::find(name).ok_or_else(|| format!("Invalid sort field name: {name}"))?;
    rows.sort_by(|a, b| {
        let (va, vb) = ((field.get)(a), (field.get)(b));
        let order = match (numeric(&va), numeric(&vb)) {
            (Some(x), Some(y)) => x.total_cmp(&y),
            // A VE without the value (stopped, unset) sorts as the lowest.
            (None, Some(_)) => std::cmp::Ordering::Less,
            (Some(_), None) => std::cmp::Ordering::Greater,
            (None, None) => match (va, vb) {
                (fields::Value::Num(None), fields::Value::Num(None)) => std::cmp::Ordering::Equal,
                (x, y) => format!("{x:?}").cmp(&format!("{y:?}")),
            },
        };
        if reverse { order.reverse() } else { order }
    });
    Ok(())
}
