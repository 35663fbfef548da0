//! Cost of the image layout against a plain directory: create time, a metadata-heavy workload
//! (create + stat + delete of small files) and a sequential write, each side by side.
//!
//! Run as root: `cargo run --release -p vz-quota --example layout_bench [DIR] [RUNS]`
//! (DIR: where to make the areas, default the system temp dir; RUNS: repetitions, default 3;
//! medians are printed).
#![allow(clippy::print_stdout, reason = "a benchmark reports to the person running it")]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use vz_quota::{DiskSpace, Layout, PrivateArea};

const FILES: usize = 20_000;
const WRITE_MB: usize = 256;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let base = args.next().map_or_else(std::env::temp_dir, PathBuf::from);
    let runs: usize = args.next().map_or(Ok(3), |r| r.parse())?;
    let mut rows: Vec<(&str, Layout, Vec<[Duration; 3]>)> = vec![
        ("directory (simfs)", Layout::Simfs, Vec::new()),
        ("image (ext4 on loop)", Layout::Image, Vec::new()),
    ];
    for _ in 0..runs {
        for (name, layout, times) in &mut rows {
            println!("{name}:");
            times.push(one_run(&base, *layout)?);
        }
    }
    println!(
        "{FILES} files create+stat+delete (no sync), {WRITE_MB} MiB sequential write + fsync; medians of {runs}"
    );
    println!(
        "{:<22} {:>12} {:>16} {:>14} {:>10}",
        "layout", "create", "metadata", "write", "MiB/s"
    );
    for (name, _, times) in &rows {
        let med = |i: usize| {
            let mut v: Vec<Duration> = times.iter().map(|t| t[i]).collect();
            v.sort();
            v[v.len() / 2]
        };
        let w = med(2);
        println!(
            "{:<22} {:>9.1} ms {:>13.1} ms {:>11.1} ms {:>10.0}",
            name,
            ms(med(0)),
            ms(med(1)),
            ms(w),
            WRITE_MB as f64 / w.as_secs_f64()
        );
    }
    Ok(())
}

/// Prints the phases of one metadata run, to show where the time goes.
fn report_phases(create: Duration, stat: Duration, delete: Duration) {
    println!(
        "  phases: create {:.0} ms, stat {:.0} ms, delete {:.0} ms",
        ms(create),
        ms(stat),
        ms(delete)
    );
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn one_run(base: &Path, layout: Layout) -> anyhow::Result<[Duration; 3]> {
    let dir = tempfile::Builder::new().prefix("vz-bench-").tempdir_in(base)?;
    let private = dir.path().join("private");
    let root = dir.path().join("root");
    std::fs::create_dir(&root)?;
    let space = DiskSpace { soft_kb: 2 << 20, hard_kb: 2 << 20 };
    let start = Instant::now();
    let area = PrivateArea::create(&private, layout, Some(space), None)?;
    let create = start.elapsed();
    area.mount(&root)?;
    let result = workload(&root);
    PrivateArea::umount(&root)?;
    area.destroy()?;
    let (metadata, write) = result?;
    Ok([create, metadata, write])
}

fn workload(root: &Path) -> anyhow::Result<(Duration, Duration)> {
    let dir = root.join("meta");
    std::fs::create_dir(&dir)?;
    let start = Instant::now();
    for i in 0..FILES {
        std::fs::write(dir.join(i.to_string()), b"0123456789abcdef")?;
    }
    let created = start.elapsed();
    for i in 0..FILES {
        std::fs::symlink_metadata(dir.join(i.to_string()))?;
    }
    let statted = start.elapsed();
    for i in 0..FILES {
        std::fs::remove_file(dir.join(i.to_string()))?;
    }
    report_phases(created, statted - created, start.elapsed() - statted);
    // No syncfs here: on the directory layout it would flush the whole host filesystem,
    // everyone's dirty data, and measure the host rather than the layout.
    let metadata = start.elapsed();

    let block = vec![0x5au8; 1 << 20];
    let start = Instant::now();
    let mut file = std::fs::File::create(root.join("seq"))?;
    for _ in 0..WRITE_MB {
        file.write_all(&block)?;
    }
    file.sync_all()?;
    let write = start.elapsed();
    drop(file);
    std::fs::remove_file(root.join("seq"))?;
    Ok((metadata, write))
}
