//! Usage against limits, and its `vzquota stat` rendering (reference §5).

use std::fmt;

/// Where a resource stands against its soft limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Grace {
    /// Usage is at or below the soft limit.
    NotOver,
    /// Over the soft limit; seconds left before it acts as a hard limit, and the Unix time then.
    Remaining {
        /// Seconds left.
        seconds: u64,
        /// Unix time at which the grace period ends.
        deadline: u64,
    },
    /// Over the soft limit for longer than the grace period.
    Expired {
        /// Unix time at which the grace period ended.
        deadline: u64,
    },
}

impl Grace {
    /// Grace state of usage that went over the soft limit at `since` (if it did), at `now`.
    pub(crate) fn at(since: Option<u64>, quota_time: u64, now: u64) -> Grace {
        match since {
            None => Grace::NotOver,
            Some(since) => {
                let deadline = since.saturating_add(quota_time);
                if now < deadline {
                    Grace::Remaining { seconds: deadline - now, deadline }
                } else {
                    Grace::Expired { deadline }
                }
            }
        }
    }

    fn deadline(self) -> u64 {
        match self {
            Grace::NotOver => 0,
            Grace::Remaining { deadline, .. } | Grace::Expired { deadline } => deadline,
        }
    }
}

impl fmt::Display for Grace {
    /// vzquota's `difftime2str`: blank, `none` when expired, `Ndays`, or `hh:mm`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = match *self {
            Grace::NotOver => String::new(),
            Grace::Expired { .. } => "none".to_owned(),
            Grace::Remaining { seconds, .. } if seconds >= 86_400 => {
                format!("{}days", seconds.div_ceil(86_400))
            }
            Grace::Remaining { seconds, .. } => {
                let minutes = seconds.div_ceil(60);
                format!("{:02}:{:02}", minutes / 60, minutes % 60)
            }
        };
        f.pad(&text)
    }
}

/// One resource (1K blocks or inodes): usage, limits, grace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Usage {
    /// Current usage.
    pub usage: u64,
    /// Soft limit.
    pub soft: u64,
    /// Hard limit.
    pub hard: u64,
    /// Grace state.
    pub grace: Grace,
}

impl Usage {
    pub(crate) fn new(usage: u64, soft: u64, hard: u64, grace: Grace) -> Usage {
        Usage { usage, soft, hard, grace }
    }

    /// vzquota's over-limit mark: `*` when over a non-zero soft or hard limit.
    pub fn over_mark(&self) -> char {
        if (self.soft != 0 && self.usage > self.soft) || (self.hard != 0 && self.usage > self.hard)
        {
            '*'
        } else {
            ' '
        }
    }
}

/// Disk usage of a VE against its first-level limits.
///
/// `Display` gives `vzquota stat`'s human table; [`QuotaStat::batch`] its `-b` form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct QuotaStat {
    /// 1K blocks.
    pub blocks: Usage,
    /// Inodes.
    pub inodes: Usage,
    /// Grace period (QUOTATIME), seconds.
    pub quota_time: u64,
    /// Whether the kernel enforces the hard limits (image layout), or they are only accounted
    /// (directory layout).
    pub enforced: bool,
}

impl QuotaStat {
    /// `vzquota -b stat`: two lines `usage soft hard grace expire`, blocks then inodes; grace is
    /// the Unix time the grace period ends (0 when not over the soft limit), expire QUOTATIME.
    pub fn batch(&self) -> String {
        let line = |u: &Usage| {
            format!(
                "{:>14} {:>14} {:>14} {:>14} {:>14}\n",
                u.usage,
                u.soft,
                u.hard,
                u.grace.deadline(),
                self.quota_time
            )
        };
        line(&self.blocks) + &line(&self.inodes)
    }
}

impl fmt::Display for QuotaStat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{:>11} {:>14}  {:>14} {:>14} {:>8}",
            "resource", "usage", "softlimit", "hardlimit", "grace"
        )?;
        for (name, u) in [("1k-blocks", &self.blocks), ("inodes", &self.inodes)] {
            writeln!(
                f,
                "{:>11} {:>14}{} {:>14} {:>14} {:>8}",
                name,
                u.usage,
                u.over_mark(),
                u.soft,
                u.hard,
                u.grace
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> QuotaStat {
        QuotaStat {
            blocks: Usage::new(512_000, 2_097_152, 2_306_867, Grace::NotOver),
            inodes: Usage::new(12_000, 131_072, 144_179, Grace::NotOver),
            quota_time: 259_200,
            enforced: true,
        }
    }

    #[test]
    fn display_matches_the_reference_table() {
        let expected = "   resource          usage       softlimit      hardlimit    grace\n\
                        \x20 1k-blocks         512000         2097152        2306867         \n\
                        \x20    inodes          12000          131072         144179         \n";
        assert_eq!(sample().to_string(), expected);
    }

    #[test]
    fn over_soft_limit_is_marked_with_grace() {
        let mut stat = sample();
        stat.blocks =
            Usage::new(2_100_000, 2_097_152, 2_306_867, Grace::at(Some(100), 259_200, 200));
        let text = stat.to_string();
        let row = text.lines().nth(1).unwrap();
        assert!(row.contains("2100000*"), "{row}");
        assert!(row.ends_with("    3days"), "{row}");
        stat.blocks.grace = Grace::at(Some(0), 60, 1000);
        assert!(stat.to_string().lines().nth(1).unwrap().ends_with("     none"));
    }

    #[test]
    fn grace_text() {
        assert_eq!(Grace::at(None, 10, 0).to_string(), "");
        assert_eq!(Grace::at(Some(0), 3_600 * 5 + 61, 0).to_string(), "05:02");
        assert_eq!(Grace::at(Some(0), 86_400, 0).to_string(), "1days");
        assert_eq!(Grace::at(Some(0), 86_401, 0).to_string(), "2days");
        assert_eq!(Grace::at(Some(10), 5, 15).to_string(), "none");
    }

    #[test]
    fn batch_has_two_lines_of_five_numbers() {
        let mut stat = sample();
        stat.inodes.grace = Grace::at(Some(1_000), 259_200, 2_000);
        let batch = stat.batch();
        let lines: Vec<Vec<&str>> = batch.lines().map(|l| l.split_whitespace().collect()).collect();
        assert_eq!(lines[0], ["512000", "2097152", "2306867", "0", "259200"]);
        assert_eq!(lines[1], ["12000", "131072", "144179", "260200", "259200"]);
    }
}
