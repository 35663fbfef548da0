//! `vzctl snapshot-list`: OpenVZ's fields, widths and default order
//! (`parent_uuid,current,uuid,date,name`), `-H`, `-o`, `--id` (that snapshot and its
//! ancestors) and `-L` (the field names).

use std::path::PathBuf;

use super::{IMAGE, Snapshot, Store, braced, code, fail};
use crate::error::{CtlError, Result};
use crate::ve::Ve;

/// Options of `vzctl snapshot-list`.
#[derive(Debug, Clone, Default)]
pub struct ListOptions {
    /// `-H`: no header line.
    pub no_header: bool,
    /// `-o`: the fields, comma-separated.
    pub output: Option<String>,
    /// `--id`: this snapshot and its ancestors only (normalized UUID).
    pub id: Option<String>,
}

/// A field: its names, header, width (0: as is).
struct Field {
    names: &'static [&'static str],
    header: &'static str,
    width: usize,
}

const FIELDS: &[Field] = &[
    Field { names: &["uuid", "id"], header: "UUID", width: 38 },
    Field { names: &["parent_uuid", "parent_id"], header: "PARENT_UUID", width: 38 },
    Field { names: &["current"], header: "C", width: 1 },
    Field { names: &["date"], header: "DATE", width: 19 },
    Field { names: &["name"], header: "NAME", width: 32 },
    Field { names: &["desc"], header: "DESC", width: 32 },
    Field { names: &["device"], header: "DEVICE", width: 16 },
    Field { names: &["target"], header: "TARGET", width: 32 },
];

const DEFAULT_ORDER: &str = "parent_uuid,current,uuid,date,name";

/// `-L`: every field name and its header, as OpenVZ prints them.
pub fn list_fields() -> String {
    FIELDS.iter().map(|f| format!("{:<15} {:<15}\n", f.names[0], f.header)).collect()
}

fn parse_fields(spec: &str) -> Result<Vec<&'static Field>> {
    spec.split(',')
        .map(|name| {
            let name = name.to_ascii_lowercase();
            FIELDS.iter().find(|f| f.names.contains(&name.as_str())).ok_or_else(|| {
                CtlError::BadParameter {
                    option: "output".into(),
                    value: spec.into(),
                    reason: format!("Unknown field: {name}"),
                }
            })
        })
        .collect()
}

/// The loop device and mount point of a snapshot's image, if mounted.
fn mount_of(store: &Store, snap: &Snapshot) -> (String, String) {
    let image = store.path(&snap.uuid).join(IMAGE);
    let target = vz_quota::mounts_of_image(&image).ok().and_then(|m| m.into_iter().next());
    let device = target.as_ref().and_then(|t| {
        let mounts = std::fs::read_to_string("/proc/self/mounts").ok()?;
        mounts.lines().find_map(|l| {
            let mut words = l.split_whitespace();
            let (dev, at) = (words.next()?, words.next()?);
            (t.as_os_str() == vz_quota::unescape_mountinfo(at)).then(|| dev.to_owned())
        })
    });
    let shown = |p: Option<PathBuf>| p.map(|p| p.display().to_string()).unwrap_or_default();
    (device.unwrap_or_default(), shown(target))
}

fn value(store: &Store, snap: &Snapshot, current: &str, field: &Field) -> String {
    match field.names[0] {
        "uuid" => braced(&snap.uuid),
        "parent_uuid" => braced(&snap.parent),
        "current" => if snap.uuid == current { "*" } else { "" }.to_owned(),
        "date" => snap.date.clone(),
        "name" => snap.name.clone(),
        "desc" => snap.desc.clone(),
        "device" => mount_of(store, snap).0,
        _ => mount_of(store, snap).1,
    }
}

/// The text of `vzctl snapshot-list`.
///
/// # Errors
/// 21 for an unknown field or UUID; 167 for the directory layout or a snapshot whose
/// ancestors are missing.
pub fn list(ve: &Ve, opts: &ListOptions) -> Result<String> {
    let fields = parse_fields(opts.output.as_deref().unwrap_or(DEFAULT_ORDER))?;
    let store = Store::of(ve, code::LIST)?;
    let all = store.all()?;
    let shown: Vec<&Snapshot> = match &opts.id {
        None => all.iter().collect(),
        Some(id) => {
            let mut chain = Vec::new();
            let mut next = id.clone();
            while !next.is_empty() {
                let Some(snap) = all.iter().find(|s| s.uuid == next) else {
                    if chain.is_empty() {
                        return Err(CtlError::BadParameter {
                            option: "id".into(),
                            value: braced(id),
                            reason: "Can't find snapshot by uuid".into(),
                        });
                    }
                    return Err(fail(code::LIST, "Inconsistency detected, base image not found"));
                };
                chain.push(snap);
                next.clone_from(&snap.parent);
            }
            chain
        }
    };
    let current = store.current();
    let mut text = String::new();
    if !opts.no_header {
        let cells: Vec<String> =
            fields.iter().map(|f| format!("{:<w$}", f.header, w = f.width)).collect();
        text.push_str(&cells.join(" "));
        text.push('\n');
    }
    for snap in shown {
        for (i, field) in fields.iter().enumerate() {
            let v = value(&store, snap, &current, field);
            if i + 1 == fields.len() {
                text.push_str(&v);
                text.push('\n');
            } else {
                text.push_str(&format!("{v:<w$} ", w = field.width));
            }
        }
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_found_by_any_name_and_unknown_ones_refused() {
        let f = parse_fields("ID,parent_id,current").unwrap();
        assert_eq!(f.iter().map(|f| f.header).collect::<Vec<_>>(), ["UUID", "PARENT_UUID", "C"]);
        assert_eq!(parse_fields("uuid,bogus").err().unwrap().exit_code(), 21);
        assert_eq!(parse_fields(DEFAULT_ORDER).unwrap().len(), 5);
        assert!(list_fields().starts_with("uuid            UUID"));
    }
}
