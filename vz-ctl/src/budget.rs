//! The CPU budget of the host-side helpers: what a VE can make them spend on its behalf.
//!
//! The host-wide console server (`vzctl __consoled`, [`crate::consoled`]) serves every running
//! VE of a tree, and a VE with second-level quota has a quotactl server of its own
//! ([`crate::quotactl`]). They run in the host's cgroup, outside the VEs', so the CPU they
//! spend answering a VE's sysinfo and quotactl calls and copying its console is charged to
//! nobody: without a bound a VE limited to 10% of a CPU that calls sysinfo in a loop in eight
//! threads made its console server use 97% of a CPU (57 000 answers in 5 s), and
//! `cat /dev/zero > /dev/console` 24%.
//!
//! Each VE is therefore held to a [`CpuBudget`], a token bucket in CPU time: its helpers may
//! use [`HELPER_SHARE`] of one CPU on average for it, with bursts up to [`HELPER_BURST`]. The
//! quotactl server, one process per VE, charges its bucket with its whole CPU time (user +
//! system, `getrusage`, [`CpuBudget::helper`]); the console server, one process for all VEs,
//! charges each VE's bucket with the CPU time it measured around that VE's work (its
//! thread's CPU clock, `CLOCK_THREAD_CPUTIME_ID`: [`thread_cpu`], [`CpuBudget::charged`]), so one VE's flood spends
//! only its own bucket. Either way whatever a request costs, in a debug or a release
//! build, on a fast or a slow host, is counted. While the bucket is empty the helper stops
//! reading that VE's requests (the seccomp listeners, the console's pty master) until it
//! holds [`RESUME`] again: the VE's callers then wait in the kernel (sysinfo callers asleep
//! in the seccomp notification, console writers on a full pty, the flow control of a serial
//! line), and nobody spins. What the host asks (`vzctl console` input, `vzlist`'s load
//! average questions, new listeners, the init's end) is served at once whatever the bucket
//! holds.
//!
//! A normal caller never waits: a burst of 200 ms of CPU is about 2 000 sysinfo answers (a
//! debug build's answer costs ~85 µs), and 64 KiB of console output written line by line
//! costs the server under 10 ms; a drained bucket owes at most the cost of one request, so
//! a call right after a flood waits at most [`RESUME`] / [`HELPER_SHARE`] (20 ms).
//!
//! Why a budget in the helper and not the VE's cgroup: the helper must stay out of the VE's
//! cgroups (CRIU dumps them, vz-cpt refuses foreign tasks in them, `vzctl stop` kills them,
//! the freezer and numproc count them), and a capped sibling cgroup per VE would add kernel
//! objects to every VE, differ between cgroup v1 and v2, and need the helper to move between
//! hierarchies; the budget costs a clock read or a `getrusage` per piece of work and bounds the same
//! thing.

use std::time::{Duration, Instant};

use nix::sys::resource::{UsageWho, getrusage};

/// The share of one CPU a VE's helper may use on average (5%).
pub const HELPER_SHARE: f64 = 0.05;

/// The CPU time a VE's helper may use at once before it is held to [`HELPER_SHARE`].
pub const HELPER_BURST: Duration = Duration::from_millis(200);

/// What a drained bucket must hold again before the helper serves the VE again: small, so a
/// call after a flood waits little, and not zero, so the helper wakes up at most
/// [`HELPER_SHARE`] / [`RESUME`] (50) times a second while the VE keeps it busy.
pub const RESUME: Duration = Duration::from_millis(1);

/// A token bucket of CPU time for one helper process (see the module's documentation).
#[derive(Debug, Clone)]
pub struct CpuBudget {
    share: f64,
    burst: f64,
    resume: f64,
    /// The bucket, in CPU seconds; negative when the last request cost more than it held.
    balance: f64,
    /// Whether the VE's requests wait (from empty until [`RESUME`] is back).
    held: bool,
    /// When the bucket was last refilled.
    at: Instant,
    /// The CPU time charged at that moment.
    used: Duration,
    /// Where the CPU time comes from.
    meter: Meter,
}

/// What a [`CpuBudget`] is charged with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Meter {
    /// The process's whole CPU time: a helper serving one VE.
    Process,
    /// What [`CpuBudget::charge`] added up: a helper serving many VEs.
    Charged(Duration),
}

impl CpuBudget {
    /// The budget of a VE's helper: [`HELPER_SHARE`], [`HELPER_BURST`], full.
    pub fn helper() -> CpuBudget {
        CpuBudget::new(HELPER_SHARE, HELPER_BURST, RESUME)
    }

    /// The budget of one VE in a server of many: as [`CpuBudget::helper`], charged only
    /// with what [`CpuBudget::charge`] is given.
    pub fn charged() -> CpuBudget {
        let mut budget = CpuBudget::helper();
        budget.meter = Meter::Charged(Duration::ZERO);
        budget.used = Duration::ZERO;
        budget
    }

    /// Adds `spent` to a [`CpuBudget::charged`] budget (nothing for a process's own).
    pub fn charge(&mut self, spent: Duration) {
        if let Meter::Charged(total) = &mut self.meter {
            *total = total.saturating_add(spent);
        }
    }

    /// A full budget of `share` of a CPU with bursts of `burst`, serving again at `resume`.
    pub fn new(share: f64, burst: Duration, resume: Duration) -> CpuBudget {
        CpuBudget {
            share,
            burst: burst.as_secs_f64(),
            resume: resume.as_secs_f64().min(burst.as_secs_f64()),
            balance: burst.as_secs_f64(),
            held: false,
            at: Instant::now(),
            used: own_cpu(),
            meter: Meter::Process,
        }
    }

    /// Charges the CPU time this process used since the last look and refills the bucket
    /// for the time that passed; whether the VE's requests may be served now.
    pub fn check(&mut self) -> bool {
        let used = match self.meter {
            Meter::Process => own_cpu(),
            Meter::Charged(total) => total,
        };
        self.account(Instant::now(), used)
    }

    /// How long until [`CpuBudget::check`] lets the VE's requests through again, if the
    /// process spends nothing meanwhile; `None` when it does now.
    pub fn wait(&self) -> Option<Duration> {
        if !self.held {
            return None;
        }
        let missing = (self.resume - self.balance).max(0.0);
        Some(Duration::from_secs_f64(missing / self.share) + Duration::from_micros(100))
    }

    /// [`CpuBudget::check`] at `now`, the process having used `used` in all.
    fn account(&mut self, now: Instant, used: Duration) -> bool {
        let passed = now.saturating_duration_since(self.at).as_secs_f64();
        let spent = used.saturating_sub(self.used).as_secs_f64();
        self.at = now;
        self.used = used.max(self.used);
        self.balance = (self.balance + passed * self.share - spent).min(self.burst);
        if self.held {
            self.held = self.balance < self.resume;
        } else if self.balance <= 0.0 {
            self.held = true;
            tracing::debug!(share = self.share, "the VE's requests wait for the CPU budget");
        }
        !self.held
    }
}

/// The CPU time this process has used (user + system).
fn own_cpu() -> Duration {
    cpu_of(UsageWho::RUSAGE_SELF)
}

/// The CPU time the calling thread has used (its CPU clock, `CLOCK_THREAD_CPUTIME_ID`):
/// taken before and after a piece of work, what the work cost.
pub fn thread_cpu() -> Duration {
    crate::sys::thread_cpu_time()
}

fn cpu_of(who: UsageWho) -> Duration {
    let Ok(usage) = getrusage(who) else { return Duration::ZERO };
    let time = |t: nix::sys::time::TimeVal| {
        let secs = u64::try_from(t.tv_sec()).unwrap_or(0);
        let micros = u64::try_from(t.tv_usec()).unwrap_or(0);
        Duration::from_secs(secs) + Duration::from_micros(micros)
    };
    time(usage.user_time()) + time(usage.system_time())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn a_burst_passes_then_the_share_holds() {
        let start = Instant::now();
        let mut b = CpuBudget::new(0.05, 200 * MS, MS);
        b.at = start;
        b.used = Duration::ZERO;
        // 150 ms of work at once: within the burst.
        assert!(b.account(start + 150 * MS, 150 * MS));
        assert_eq!(b.wait(), None);
        // 100 ms more within the same 10 ms: the bucket is empty, the VE waits.
        assert!(!b.account(start + 160 * MS, 250 * MS));
        let wait = b.wait().expect("held");
        // 200 + 8 ms refilled, 250 spent: 42 ms owed plus 1 ms to resume, at 5%: 0.86 s.
        assert!((850 * MS..870 * MS).contains(&wait), "{wait:?}");
        // Still short of RESUME halfway there; served again once it has passed.
        assert!(!b.account(start + 160 * MS + wait / 2, 250 * MS));
        assert!(b.account(start + 160 * MS + wait, 250 * MS));
        assert_eq!(b.wait(), None);
    }

    #[test]
    fn over_a_long_flood_the_process_gets_its_share() {
        // A VE that always has a request costing 100 µs: the helper serves while the
        // bucket holds, for 10 s of 1 ms steps.
        let start = Instant::now();
        let mut b = CpuBudget::new(0.05, 200 * MS, MS);
        b.at = start;
        b.used = Duration::ZERO;
        let mut used = Duration::ZERO;
        let mut now = start;
        while now < start + Duration::from_secs(10) {
            if b.account(now, used) {
                used += Duration::from_micros(100);
            }
            now += MS;
        }
        // 200 ms of burst + 5% of 10 s, and at most one request more.
        let bound = 200 * MS + 500 * MS + Duration::from_micros(100);
        assert!(used <= bound, "{used:?}");
        assert!(used >= 650 * MS, "it keeps serving at its share: {used:?}");
    }

    #[test]
    fn an_idle_bucket_fills_only_up_to_the_burst() {
        let start = Instant::now();
        let mut b = CpuBudget::new(0.05, 200 * MS, MS);
        b.at = start;
        b.used = Duration::ZERO;
        assert!(b.account(start + Duration::from_secs(3600), Duration::ZERO));
        assert!(b.account(start + Duration::from_secs(3600), 199 * MS));
        assert!(!b.account(start + Duration::from_secs(3600), 201 * MS), "no more than a burst");
    }

    #[test]
    fn a_charged_budget_counts_only_its_charges() {
        let mut b = CpuBudget::charged();
        assert!(b.check());
        // The thread's own work is not charged to it; 250 ms charged at once is.
        let start = thread_cpu();
        while thread_cpu() < start + 5 * MS {
            std::hint::black_box(thread_cpu());
        }
        assert!(b.check(), "uncharged work counts");
        b.charge(250 * MS);
        assert!(!b.check(), "a charge past the burst holds the VE");
        assert!(b.wait().expect("held") > 500 * MS);
        let mut process = CpuBudget::helper();
        process.charge(Duration::from_secs(10));
        assert!(process.check(), "a process's budget is charged with its own time only");
    }

    #[test]
    fn the_process_cpu_time_grows_with_work() {
        let before = own_cpu();
        let started = Instant::now();
        let mut x = 0_u64;
        // Busy until 10 ms of CPU are counted (a shared host may give less than wall time).
        while own_cpu() < before + 10 * MS {
            assert!(started.elapsed() < Duration::from_secs(10), "no CPU time counted");
            for _ in 0..10_000 {
                x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
            }
        }
    }
}
