//! The numbers of `cargo xtask bench`: medians, ratios, the table it prints, and what it reads
//! from /proc (kernel memory from /proc/meminfo, kernel threads and host processes from
//! /proc/PID/stat). Pure functions over text, so the parsing and the statistics are tested
//! without running anything.

use std::fmt::Write as _;
use std::time::Duration;

/// What a cell measures (values are only compared within one unit).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Value {
    /// A duration in milliseconds.
    Ms(f64),
    /// An amount of memory in KiB.
    KiB(f64),
    /// A count (processes, threads).
    Count(f64),
}

impl Value {
    fn number(self) -> f64 {
        match self {
            Value::Ms(v) | Value::KiB(v) | Value::Count(v) => v,
        }
    }

    /// `self / other` when both are in the same unit and `other` is positive.
    pub(crate) fn ratio_to(self, other: Value) -> Option<f64> {
        let same = std::mem::discriminant(&self) == std::mem::discriminant(&other);
        (same && other.number() > 0.0).then(|| self.number() / other.number())
    }
}

impl std::fmt::Display for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            Value::Ms(v) if v >= 1000.0 => write!(f, "{:.2} s", v / 1000.0),
            Value::Ms(v) => write!(f, "{v:.1} ms"),
            Value::KiB(v) => write!(f, "{v:.0} KiB"),
            Value::Count(v) if (v - v.round()).abs() < 0.05 => write!(f, "{v:.0}"),
            Value::Count(v) => write!(f, "{v:.1}"),
        }
    }
}

/// The median of `samples` (the mean of the two middle ones for an even count); `None` when
/// there are none.
pub(crate) fn median(samples: &[Duration]) -> Option<Duration> {
    let mut sorted = samples.to_vec();
    sorted.sort();
    let n = sorted.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(sorted[n / 2]),
        _ => Some((sorted[n / 2 - 1] + sorted[n / 2]) / 2),
    }
}

/// The median of `samples` in milliseconds.
pub(crate) fn median_ms(samples: &[Duration]) -> Option<Value> {
    median(samples).map(|d| Value::Ms(d.as_secs_f64() * 1e3))
}

/// One line of the table: the work measured and a value per column (`None`: not measured).
#[derive(Debug, Clone)]
pub(crate) struct Row {
    /// What was measured.
    pub(crate) work: String,
    /// One cell per column of the table, in the table's column order.
    pub(crate) cells: Vec<Option<Value>>,
    /// Which peer column vz's ratio is taken to (crun's unless this row names another).
    pub(crate) reference: Option<usize>,
}

/// The table: column names (the first is vz, the last the floor) and its rows.
#[derive(Debug, Clone)]
pub(crate) struct Table {
    /// Column names; `columns[0]` is vz.
    pub(crate) columns: Vec<String>,
    /// The rows, in the order measured.
    pub(crate) rows: Vec<Row>,
}

impl Table {
    /// An empty table with these columns (vz first, the floor last).
    pub(crate) fn new(columns: &[&str]) -> Table {
        Table { columns: columns.iter().map(|&c| c.to_owned()).collect(), rows: Vec::new() }
    }

    /// The index of the column called `name`.
    pub(crate) fn column(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c == name)
    }

    /// Adds a row with the values given by column name (unknown names are ignored).
    pub(crate) fn push(&mut self, work: &str, values: &[(&str, Option<Value>)]) {
        let mut cells = vec![None; self.columns.len()];
        for (name, value) in values {
            if let Some(i) = self.column(name) {
                cells[i] = *value;
            }
        }
        self.rows.push(Row { work: work.to_owned(), cells, reference: None });
    }

    /// Takes the last row's vz ratio to the column `name` instead of crun's.
    pub(crate) fn reference(&mut self, name: &str) {
        let column = self.column(name);
        if let Some(row) = self.rows.last_mut() {
            row.reference = column;
        }
    }

    /// The table as Markdown: vz's cell carries its ratio to crun (or the row's reference
    /// column) and to the floor when those were measured.
    pub(crate) fn render(&self) -> String {
        let crun = self.column("crun");
        let floor = self.columns.len().checked_sub(1);
        let mut out = String::new();
        let _ = writeln!(out, "| work | {} |", self.columns.join(" | "));
        let _ = writeln!(out, "|---|{}", "---|".repeat(self.columns.len()));
        for row in &self.rows {
            let mut line = format!("| {} |", row.work);
            for (i, cell) in row.cells.iter().enumerate() {
                let Some(value) = cell else {
                    line.push_str(" |");
                    continue;
                };
                let mut text = value.to_string();
                if i == 0 {
                    let mut ratios = Vec::new();
                    let reference = row.reference.or(crun);
                    let floor = floor.filter(|&f| Some(f) != reference);
                    for (j, label) in [(reference, None), (floor, Some("floor"))] {
                        let Some(j) = j.filter(|&j| j != 0) else { continue };
                        let Some(r) = row.cells[j].and_then(|other| value.ratio_to(other)) else {
                            continue;
                        };
                        let label = label.map_or_else(|| self.columns[j].clone(), str::to_owned);
                        ratios.push(format!("{r:.2}× {label}"));
                    }
                    if !ratios.is_empty() {
                        text = format!("{text} ({})", ratios.join(", "));
                    }
                }
                let _ = write!(line, " {text} |");
            }
            out.push_str(&line);
            out.push('\n');
        }
        out
    }
}

/// The kernel memory of /proc/meminfo's text that the per-VE figures add up, in KiB:
/// `(Slab, KernelStack + PageTables)`; `None` when a field is missing.
pub(crate) fn kernel_kib(meminfo: &str) -> Option<(u64, u64)> {
    let field = |name: &str| {
        meminfo.lines().find_map(|line| {
            let rest = line.strip_prefix(name)?.strip_prefix(':')?;
            rest.split_whitespace().next()?.parse::<u64>().ok()
        })
    };
    Some((field("Slab")?, field("KernelStack")? + field("PageTables")?))
}

/// The kernel's flag of a kernel thread in /proc/PID/stat's `flags` field.
const PF_KTHREAD: u64 = 0x0020_0000;

/// Whether /proc/PID/stat's text is a kernel thread's (`PF_KTHREAD` in field 9, `flags`);
/// `None` for text that is not a stat line. The command name may hold spaces and `)`.
pub(crate) fn is_kernel_thread(stat: &str) -> Option<bool> {
    let after = stat.rsplit_once(") ")?.1;
    // After the command: state (3), ppid, pgrp, session, tty_nr, tpgid, flags (9).
    let flags: u64 = after.split_whitespace().nth(6)?.parse().ok()?;
    Some(flags & PF_KTHREAD != 0)
}

/// The per-item cost of going from `before` to `after` with `n` items: `(after - before) / n`
/// (negative when the host freed more than the items took).
pub(crate) fn per_item(before: u64, after: u64, n: usize) -> f64 {
    if n == 0 {
        return 0.0;
    }
    #[allow(clippy::cast_precision_loss, reason = "counts and KiB are far below 2^52")]
    let delta = after as f64 - before as f64;
    #[allow(clippy::cast_precision_loss, reason = "n is a small count")]
    let n = n as f64;
    delta / n
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    #[test]
    fn medians_of_odd_even_and_empty_sets() {
        assert_eq!(median(&[ms(9), ms(1), ms(5)]), Some(ms(5)));
        assert_eq!(median(&[ms(4), ms(1), ms(10), ms(2)]), Some(ms(3)));
        assert_eq!(median(&[ms(7)]), Some(ms(7)));
        assert_eq!(median(&[]), None);
        // One outlier does not move it.
        assert_eq!(median(&[ms(5), ms(5), ms(900)]), Some(ms(5)));
        assert_eq!(median_ms(&[ms(2), ms(4)]), Some(Value::Ms(3.0)));
    }

    #[test]
    fn ratios_only_within_a_unit() {
        assert_eq!(Value::Ms(10.0).ratio_to(Value::Ms(4.0)), Some(2.5));
        assert_eq!(Value::Ms(10.0).ratio_to(Value::KiB(4.0)), None);
        assert_eq!(Value::Count(1.0).ratio_to(Value::Count(0.0)), None);
    }

    #[test]
    fn values_print_with_their_unit() {
        assert_eq!(Value::Ms(12.345).to_string(), "12.3 ms");
        assert_eq!(Value::Ms(2040.0).to_string(), "2.04 s");
        assert_eq!(Value::KiB(316.4).to_string(), "316 KiB");
        assert_eq!(Value::Count(2.0).to_string(), "2");
        assert_eq!(Value::Count(0.5).to_string(), "0.5");
    }

    #[test]
    fn table_shows_ratios_to_crun_and_the_floor() {
        let mut t = Table::new(&["vz", "crun", "lxc", "floor"]);
        t.push(
            "cycle",
            &[
                ("vz", Some(Value::Ms(10.0))),
                ("crun", Some(Value::Ms(20.0))),
                ("floor", Some(Value::Ms(4.0))),
            ],
        );
        t.push("exec", &[("vz", Some(Value::Ms(3.0))), ("lxc", Some(Value::Ms(6.0)))]);
        t.reference("lxc");
        t.push("create", &[("vz", Some(Value::Ms(8.0))), ("floor", Some(Value::Ms(4.0)))]);
        t.reference("floor");
        t.push("only vz", &[("vz", Some(Value::Ms(1.0))), ("nobody", Some(Value::Ms(1.0)))]);
        let text = t.render();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "| work | vz | crun | lxc | floor |");
        assert_eq!(lines[2], "| cycle | 10.0 ms (0.50× crun, 2.50× floor) | 20.0 ms | | 4.0 ms |");
        assert_eq!(lines[3], "| exec | 3.0 ms (0.50× lxc) | | 6.0 ms | |");
        assert_eq!(lines[4], "| create | 8.0 ms (2.00× floor) | | | 4.0 ms |");
        assert_eq!(lines[5], "| only vz | 1.0 ms | | | |");
    }

    #[test]
    fn kernel_memory_adds_slab_stacks_and_page_tables() {
        let meminfo = "MemTotal:       24000000 kB\nSlab:             500000 kB\n\
                       SReclaimable:     200000 kB\nKernelStack:       16000 kB\n\
                       PageTables:        12000 kB\n";
        assert_eq!(kernel_kib(meminfo), Some((500_000, 28_000)));
        assert_eq!(kernel_kib("Slab: 1 kB\nKernelStack: 2 kB\n"), None);
        assert_eq!(per_item(1000, 1600, 3), 200.0);
        assert_eq!(per_item(1600, 1000, 2), -300.0);
        assert_eq!(per_item(1, 2, 0), 0.0);
    }

    #[test]
    fn kernel_threads_are_told_by_their_flags() {
        let kthread = "2 (kthreadd) S 0 0 0 0 -1 2129984 0 0 0 0 0 0 0 0 20 0 1 0 3 0 0";
        let user = "4242 (my prog) x) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 1 0 0 20 0 1 0";
        assert_eq!(is_kernel_thread(kthread), Some(true));
        assert_eq!(is_kernel_thread(user), Some(false));
        assert_eq!(is_kernel_thread("garbage"), None);
    }
}
