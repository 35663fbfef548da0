//! The binaries' logging: `tracing` events to stderr by `--verbose`/`--quiet`, and to the
//! log file of vz.conf (`LOGGING`, `LOGFILE`, `LOG_LEVEL`) in OpenVZ's line format
//! `<time> vzctl : CT <id> : <message>`.

use std::fs::OpenOptions;
use std::path::Path;
use std::sync::Mutex;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::FmtSpan;
use tracing_subscriber::prelude::*;

/// Installs the subscriber. `verbose` 0 shows warnings, 1 info, 2 and more debug.
/// `logfile`, when given and writable, receives lines tagged with `program` and `ctid`, at
/// the level of its `LOG_LEVEL` (-1 errors only, 0 normal, 1 and more debug).
pub fn init(
    program: &'static str,
    verbose: u8,
    quiet: bool,
    logfile: Option<(&Path, i32)>,
    ctid: Option<u32>,
) {
    let level = match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info",
        _ => "debug",
    };
    let stderr = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .without_time()
        .with_target(false)
        .with_level(false)
        .with_filter(EnvFilter::new(level));
    let file = logfile
        .and_then(|(path, log_level)| {
            let file = OpenOptions::new().create(true).append(true).open(path).ok()?;
            Some((file, log_level))
        })
        .map(|(file, log_level)| {
            let file_level = match log_level {
                ..0 => "error",
                0 => "info",
                _ => "debug",
            };
            let tag = match ctid {
                Some(id) => format!("{program} : CT {id} :"),
                None => format!("{program} :"),
            };
            tracing_subscriber::fmt::layer()
                .with_writer(Mutex::new(file))
                .with_ansi(false)
                .with_target(false)
                .with_level(false)
                .with_span_events(FmtSpan::NONE)
                .fmt_fields(tracing_subscriber::fmt::format::DefaultFields::new())
                .event_format(LineFormat { tag })
                .with_filter(EnvFilter::new(file_level))
        });
    let _ = tracing_subscriber::registry().with(stderr).with(file).try_init();
}

/// `<%Y-%m-%dT%T%z> <tag> <message>`, OpenVZ's log line.
struct LineFormat {
    tag: String,
}

impl<S, N> tracing_subscriber::fmt::FormatEvent<S, N> for LineFormat
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    N: for<'a> tracing_subscriber::fmt::FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &tracing_subscriber::fmt::FmtContext<'_, S, N>,
        mut writer: tracing_subscriber::fmt::format::Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        write!(writer, "{} {} ", local_time(), self.tag)?;
        ctx.field_format().format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}

/// The current time as `%Y-%m-%dT%T%z`, in UTC (`+0000`): no time zone database needed.
fn local_time() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    format_utc(secs)
}

/// Formats seconds since the epoch as `YYYY-MM-DDTHH:MM:SS+0000` (Howard Hinnant's
/// civil-from-days algorithm).
pub(crate) fn format_utc(secs: u64) -> String {
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}+0000",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_times_format_like_strftime() {
        assert_eq!(format_utc(0), "1970-01-01T00:00:00+0000");
        assert_eq!(format_utc(1_795_550_400), "2026-11-24T20:00:00+0000");
        assert_eq!(format_utc(951_782_400), "2000-02-29T00:00:00+0000");
    }
}
