//! The text of `/proc/user_beancounters` (reference §3.3): `Version: 2.5`, the 64-bit header,
//! then per beancounter the 24 rows of kernel indices 0…23 including the `dummy` rows, in the
//! OpenVZ 7 kernel's layout (`"%10s%c %-12s %20lu %20lu %20lu %20lu %20lu"`).
//! Also the reader vzlist and vzubc use (a line with `:` starts a new id).

use std::fmt::Write as _;

use crate::resource::{PROC_ROWS, Resource};
use crate::usage::Usage;

/// Renders `/proc/user_beancounters` for the given beancounters, in the given order.
///
/// A parameter missing from a beancounter's list is printed like a dummy row (all zeros);
/// `swappages` and `avnumproc` are never printed (they are not in this file on OpenVZ kernels).
pub fn render_proc_view(rows: &[(u32, Vec<Usage>)]) -> String {
    let mut out = String::from("Version: 2.5\n");
    let _ = writeln!(
        out,
        "{:>10}  {:<12} {:>20} {:>20} {:>20} {:>20} {:>20}",
        "uid", "resource", "held", "maxheld", "barrier", "limit", "failcnt"
    );
    for (id, usage) in rows {
        for index in 0..PROC_ROWS {
            let resource = Resource::from_index(index);
            let found = resource.and_then(|r| usage.iter().find(|u| u.resource == r));
            let name = resource.map_or("dummy", Resource::name);
            let (held, maxheld, barrier, limit, failcnt) = found
                .map_or((0, 0, 0, 0, 0), |u| (u.held, u.maxheld, u.barrier, u.limit, u.failcnt));
            let (uid, sep) = if index == 0 { (id.to_string(), ':') } else { (String::new(), ' ') };
            let _ = writeln!(
                out,
                "{uid:>10}{sep} {name:<12} {held:>20} {maxheld:>20} {barrier:>20} {limit:>20} {failcnt:>20}"
            );
        }
    }
    out
}

/// Reads the text of `/proc/user_beancounters` or `/proc/bc/resources` back (vzctl's
/// `get_ub`): a line containing `:` starts a new id, every row is
/// `name held maxheld barrier limit failcnt`. Dummy rows, unknown names and lines that do
/// not parse (the version and header lines) are skipped.
pub fn parse_proc_view(text: &str) -> Vec<(u32, Vec<Usage>)> {
    let mut out: Vec<(u32, Vec<Usage>)> = Vec::new();
    for line in text.lines() {
        let mut rest = line;
        if let Some((id, tail)) = line.split_once(':') {
            let Ok(id) = id.trim().parse::<u32>() else { continue };
            out.push((id, Vec::new()));
            rest = tail;
        }
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let [name, numbers @ ..] = fields.as_slice() else { continue };
        let Ok(resource) = Resource::from_name(name) else { continue };
        let Ok(n) = numbers.iter().map(|s| s.parse::<u64>()).collect::<Result<Vec<u64>, _>>()
        else {
            continue;
        };
        let Ok([held, maxheld, barrier, limit, failcnt]) = <[u64; 5]>::try_from(n.as_slice())
        else {
            continue;
        };
        let Some(last) = out.last_mut() else { continue };
        last.1.push(Usage { resource, held, maxheld, barrier, limit, failcnt, measured: true });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::param::UNLIMITED;
    use proptest::prelude::*;

    fn u(resource: Resource, held: u64, maxheld: u64, barrier: u64, limit: u64) -> Usage {
        Usage { resource, held, maxheld, barrier, limit, failcnt: 0, measured: true }
    }

    #[test]
    fn golden_reference_example() {
        let rows = vec![(
            101,
            vec![
                u(Resource::KmemSize, 5_316_918, 8_777_728, UNLIMITED, UNLIMITED),
                u(Resource::LockedPages, 0, 0, 65536, 65536),
            ],
        )];
        let text = render_proc_view(&rows);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "Version: 2.5");
        assert_eq!(
            lines[1],
            "       uid  resource                     held              maxheld              barrier                limit              failcnt"
        );
        assert_eq!(
            lines[2],
            "       101: kmemsize                  5316918              8777728  9223372036854775807  9223372036854775807                    0"
        );
        assert_eq!(
            lines[3],
            "            lockedpages                     0                    0                65536                65536                    0"
        );
        assert_eq!(
            lines[6],
            "            dummy                           0                    0                    0                    0                    0"
        );
        assert_eq!(lines.len(), 2 + 24);
        let names: Vec<&str> =
            lines[2..].iter().map(|l| l[12..].split(' ').next().unwrap()).collect();
        assert_eq!(names[5], "numproc");
        assert_eq!(&names[20..24], ["dummy", "dummy", "dummy", "numiptent"]);
        assert!(!text.contains("swappages"));
    }

    #[test]
    fn several_beancounters_each_start_with_their_id() {
        let rows = vec![(0, vec![]), (4_294_967_295, vec![u(Resource::NumProc, 3, 4, 10, 10)])];
        let text = render_proc_view(&rows);
        assert_eq!(text.lines().count(), 2 + 48);
        assert!(text.lines().nth(2).unwrap().starts_with("         0: kmemsize "));
        assert!(text.lines().nth(26).unwrap().starts_with("4294967295: kmemsize "));
        assert_eq!(
            parse_proc_view(&text),
            vec![(0, vec![]), (4_294_967_295, vec![u(Resource::NumProc, 3, 4, 10, 10)])]
                .into_iter()
                .map(|(id, v)| (id, fill_zero_rows(v)))
                .collect::<Vec<_>>()
        );
    }

    /// The rows the renderer prints for a list: every kernel resource, zeros when missing.
    fn fill_zero_rows(v: Vec<Usage>) -> Vec<Usage> {
        (0..PROC_ROWS)
            .filter_map(Resource::from_index)
            .map(|r| v.iter().find(|x| x.resource == r).copied().unwrap_or(u(r, 0, 0, 0, 0)))
            .collect()
    }

    proptest! {
        #[test]
        fn render_then_parse_round_trips(
            id in any::<u32>(),
            values in proptest::collection::vec((any::<u64>(), any::<u64>(), any::<u64>(), any::<u64>(), any::<u64>()), 20)
        ) {
            let usage: Vec<Usage> = (0..PROC_ROWS)
                .filter_map(Resource::from_index)
                .zip(values)
                .map(|(resource, (held, maxheld, barrier, limit, failcnt))| Usage {
                    resource, held, maxheld, barrier, limit, failcnt, measured: true,
                })
                .collect();
            let text = render_proc_view(&[(id, usage.clone())]);
            for (line, index) in text.lines().skip(2).zip(0..PROC_ROWS) {
                // The name starts at column 13 and every number is right-aligned in 20 columns.
                let name = Resource::from_index(index).map_or("dummy", Resource::name);
                prop_assert_eq!(&line[10..12], if index == 0 { ": " } else { "  " });
                prop_assert!(line[12..].starts_with(name));
                prop_assert_eq!(line.len(), 12 + 12 + 5 * 21);
            }
            prop_assert_eq!(parse_proc_view(&text), vec![(id, usage)]);
        }
    }
}
