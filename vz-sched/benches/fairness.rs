//! Fairness benchmark (`cargo bench -p vz-sched --bench fairness`, as root): configured vs
//! measured CPU share for cpuunits ratios 1:1, 1:3, 1:10 with two and three groups, cpulimit
//! 25/50/150 vs measured, and how fast a runtime change takes effect. Every group runs two
//! busy loops per CPU in a throw-away cgroup made by the kernel tests' helper; prints
//! Markdown tables. `VZ_BENCH_SECS` sets the measuring time per row (default 3).
#![allow(clippy::print_stdout, clippy::print_stderr, reason = "a benchmark reports to its user")]

#[path = "../tests/common/mod.rs"]
mod common;

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Result;
use common::TestTree;
use vz_sched::{CpuLimit, CpuSettings, CpuUnits, Cpus};

const NAMES: [&str; 3] = ["a", "b", "c"];

fn main() -> ExitCode {
    // `cargo test --all-targets` runs bench binaries without `--bench`: take a minute only
    // when asked to measure.
    if !std::env::args().any(|a| a == "--bench") {
        println!("fairness: measuring needs `cargo bench -p vz-sched --bench fairness`");
        return ExitCode::SUCCESS;
    }
    if !vz_tests::check_needs(
        "fairness",
        &[vz_tests::Need::Root, vz_tests::Need::CgroupController("cpu")],
    ) {
        return ExitCode::SUCCESS;
    }
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("fairness: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<()> {
    let secs: f64 = std::env::var("VZ_BENCH_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(3.0);
    let wall = Duration::from_secs_f64(secs);
    let ncpus = vz_sched::online_cpus() as usize;
    let hierarchy = common::Hierarchy::detect()?;
    println!(
        "vz-sched fairness: {ncpus} CPUs, cgroup {}, {secs} s per row, 2 busy loops per CPU per group\n",
        if hierarchy.is_v2() { "v2" } else { "v1" }
    );

    println!(
        "| cpuunits | configured share % | measured share % | measured ratio to first | worst ratio error % |"
    );
    println!("|---|---|---|---|---|");
    for ratio in [&[1, 1][..], &[1, 3], &[1, 10], &[1, 1, 1], &[1, 1, 3], &[1, 1, 10]] {
        let names = &NAMES[..ratio.len()];
        let mut tree = TestTree::new("bench-share", names)?;
        for (name, r) in names.iter().zip(ratio) {
            let units = CpuUnits::new(1000 * r)?;
            vz_sched::apply(
                &tree.dirs(name),
                &CpuSettings { units: Some(units), ..Default::default() },
            )?;
            tree.burn(name, 2 * ncpus)?;
        }
        std::thread::sleep(Duration::from_millis(500));
        let rates = tree.measure(names, wall)?;
        let total_w: u32 = ratio.iter().sum();
        let total_r: f64 = rates.iter().sum();
        let configured: Vec<String> = ratio
            .iter()
            .map(|&w| format!("{:.1}", 100.0 * f64::from(w) / f64::from(total_w)))
            .collect();
        let measured: Vec<String> =
            rates.iter().map(|r| format!("{:.1}", 100.0 * r / total_r)).collect();
        let ratios: Vec<String> = rates.iter().map(|r| format!("{:.2}", r / rates[0])).collect();
        let worst = ratio
            .iter()
            .zip(&rates)
            .skip(1)
            .map(|(&w, r)| ((r / rates[0]) / f64::from(w) - 1.0).abs() * 100.0)
            .fold(0.0, f64::max);
        let units: Vec<String> = ratio.iter().map(|r| (1000 * r).to_string()).collect();
        println!(
            "| {} | {} | {} | {} | {worst:.1} |",
            units.join(":"),
            configured.join(" / "),
            measured.join(" / "),
            ratios.join(" / ")
        );
    }

    println!("\n| cpulimit | measured % of one CPU | difference (points) | throttled periods |");
    println!("|---|---|---|---|");
    for limit in [25, 50, 150] {
        let mut tree = TestTree::new("bench-limit", &["a"])?;
        let dirs = tree.dirs("a");
        vz_sched::apply(
            &dirs,
            &CpuSettings { limit: Some(CpuLimit::percent(limit)), ..Default::default() },
        )?;
        tree.burn("a", 2 * ncpus)?;
        std::thread::sleep(Duration::from_millis(500));
        let before = vz_sched::read(&dirs)?;
        let rate = 100.0 * tree.measure(&["a"], wall)?[0];
        let after = vz_sched::read(&dirs)?;
        println!(
            "| {limit} | {rate:.1} | {:+.1} | {} of {} |",
            rate - f64::from(limit),
            after.nr_throttled - before.nr_throttled,
            after.nr_periods - before.nr_periods
        );
    }

    println!("\n| runtime change | effective after (ms) | rate before → after (% of one CPU) |");
    println!("|---|---|---|");
    let mut tree = TestTree::new("bench-change", &["a"])?;
    let dirs = tree.dirs("a");
    let limit = |percent| CpuSettings {
        limit: Some(CpuLimit::percent(percent)),
        cpus: Some(Cpus::ALL),
        ..Default::default()
    };
    vz_sched::apply(&dirs, &limit(25))?;
    tree.burn("a", 2 * ncpus)?;
    std::thread::sleep(Duration::from_millis(1000));
    // Lifting: effective once a 100 ms window shows more than one CPU (a 25% cap allows at
    // most 50 ms of CPU in any 100 ms window).
    let (ms, before, after) =
        change(&tree, &dirs, &limit(0), Duration::from_millis(100), |rate| rate > 1.0)?;
    println!("| cpulimit 25 → 0 (unlimited) | {ms:.0} | {before:.0} → {after:.0} |");
    std::thread::sleep(Duration::from_millis(1000));
    // Capping: effective once a 200 ms window shows under half a CPU.
    let (ms, before, after) =
        change(&tree, &dirs, &limit(25), Duration::from_millis(200), |rate| rate < 0.5)?;
    println!("| cpulimit 0 → 25 | {ms:.0} | {before:.0} → {after:.0} |");
    println!(
        "\n(effective after = end of the first window, sampled every 10 ms, whose rate is past the threshold;\nan upper bound that includes the window length)"
    );
    Ok(())
}

/// Applies `settings` and returns the milliseconds until a `window` of usage satisfies
/// `effective`, with the rate over the second before and the second after.
fn change(
    tree: &TestTree,
    dirs: &vz_sched::CgroupDirs,
    settings: &CpuSettings,
    window: Duration,
    effective: impl Fn(f64) -> bool,
) -> Result<(f64, f64, f64)> {
    let before = tree.measure(&["a"], Duration::from_secs(1))?[0];
    let t0 = Instant::now();
    vz_sched::apply(dirs, settings)?;
    let mut samples = vec![(Instant::now(), tree.usage_s("a")?)];
    let mut latency = None;
    while t0.elapsed() < Duration::from_secs(3) && latency.is_none() {
        std::thread::sleep(Duration::from_millis(10));
        let now = (Instant::now(), tree.usage_s("a")?);
        if let Some(start) = samples.iter().rev().find(|(t, _)| now.0.duration_since(*t) >= window)
        {
            let rate = (now.1 - start.1) / now.0.duration_since(start.0).as_secs_f64();
            if effective(rate) {
                latency = Some(now.0.duration_since(t0).as_secs_f64() * 1000.0);
            }
        }
        samples.push(now);
    }
    let after = tree.measure(&["a"], Duration::from_secs(1))?[0];
    Ok((latency.unwrap_or(f64::NAN), 100.0 * before, 100.0 * after))
}
