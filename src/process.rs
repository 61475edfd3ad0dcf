//! The process's own figures, read from Linux procfs: CPU time, resident and virtual
//! memory, open file descriptors and their soft limit, and the start time — what the
//! standard `process_*` families of `/metrics` show. It owns reading `/proc/self/{stat,
//! status,fd,limits}` and `/proc/stat` and parsing their text; nothing else. It renders
//! nothing and uses no other module.
//!
//! The parsers take a file's text and answer `None` for text they do not understand; they
//! never panic. Elsewhere than Linux, or where a file cannot be read, the figures it would
//! give are `None`, and the families showing them are left out.

use std::path::Path;

/// Clock ticks per second of the times in `/proc/self/stat`: `USER_HZ`, which is 100 on
/// every mainstream Linux architecture (x86, arm, arm64, riscv, ppc, s390). Asking
/// `sysconf(_SC_CLK_TCK)` would need `unsafe` or a dependency; Prometheus's own procfs
/// library makes the same assumption.
pub const CLOCK_TICKS_PER_SECOND: u64 = 100;

/// The soft limit of open files when `/proc/self/limits` says `unlimited`: `RLIM_INFINITY`,
/// as `getrlimit` reports it (and as Prometheus's procfs library reads it).
pub const UNLIMITED: u64 = u64::MAX;

/// The process's figures at one reading; `None` where unknown.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ProcessStats {
    /// User plus system CPU time, seconds.
    pub cpu_seconds: Option<f64>,
    /// Resident set size (`VmRSS`), bytes.
    pub resident_bytes: Option<u64>,
    /// Virtual memory size (`VmSize`), bytes.
    pub virtual_bytes: Option<u64>,
    /// File descriptors open now.
    pub open_fds: Option<u64>,
    /// Soft limit of open files ([`UNLIMITED`] when there is none).
    pub max_fds: Option<u64>,
    /// When the process started, Unix seconds.
    pub start_time_seconds: Option<f64>,
}

/// The times of a `/proc/<pid>/stat` line, in clock ticks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StatTimes {
    /// Field 14: time in user mode.
    pub utime: u64,
    /// Field 15: time in kernel mode.
    pub stime: u64,
    /// Field 22: when the process started, after boot.
    pub starttime: u64,
}

impl StatTimes {
    /// User plus system CPU time, seconds.
    pub fn cpu_seconds(&self) -> f64 {
        (self.utime as f64 + self.stime as f64) / CLOCK_TICKS_PER_SECOND as f64
    }

    /// The start time in Unix seconds, for a machine booted at `btime` (Unix seconds).
    pub fn start_time_seconds(&self, btime: u64) -> f64 {
        btime as f64 + self.starttime as f64 / CLOCK_TICKS_PER_SECOND as f64
    }
}

/// Reads the figures of this process now. Each file is read once; a file that cannot be
/// read or parsed leaves its figures `None`.
pub fn read() -> ProcessStats {
    if !cfg!(any(target_os = "linux", target_os = "android")) {
        return ProcessStats::default();
    }
    let text = |p: &str| std::fs::read_to_string(p).ok();
    let stat = text("/proc/self/stat").and_then(|s| parse_stat(&s));
    let status = text("/proc/self/status");
    let btime = text("/proc/stat").and_then(|s| parse_btime(&s));
    ProcessStats {
        cpu_seconds: stat.map(|t| t.cpu_seconds()),
        resident_bytes: status
            .as_deref()
            .and_then(|s| parse_status_bytes(s, "VmRSS")),
        virtual_bytes: status
            .as_deref()
            .and_then(|s| parse_status_bytes(s, "VmSize")),
        open_fds: count_entries(Path::new("/proc/self/fd")),
        max_fds: text("/proc/self/limits").and_then(|s| parse_max_open_files(&s)),
        start_time_seconds: stat.zip(btime).map(|(t, b)| t.start_time_seconds(b)),
    }
}

/// The times of a `/proc/<pid>/stat` text. Field 2, the command name, is in parentheses
/// and may hold spaces and parentheses itself, so the fields are counted from the last
/// `)`.
pub fn parse_stat(stat: &str) -> Option<StatTimes> {
    let (_, rest) = stat.rsplit_once(')')?;
    // Field 3 (the state) is the first after the command name.
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| -> Option<u64> { fields.get(n - 3)?.parse().ok() };
    Some(StatTimes {
        utime: field(14)?,
        stime: field(15)?,
        starttime: field(22)?,
    })
}

/// The value of `key` (`VmRSS`, `VmSize`) in a `/proc/<pid>/status` text, in bytes; the
/// file states it in kB.
pub fn parse_status_bytes(status: &str, key: &str) -> Option<u64> {
    let value = status
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))?;
    let mut words = value.split_whitespace();
    let kb: u64 = words.next()?.parse().ok()?;
    match (words.next(), words.next()) {
        (Some("kB"), None) => kb.checked_mul(1024),
        _ => None,
    }
}

/// The soft limit of `Max open files` in a `/proc/<pid>/limits` text ([`UNLIMITED`] for
/// `unlimited`).
pub fn parse_max_open_files(limits: &str) -> Option<u64> {
    let rest = limits
        .lines()
        .find_map(|l| l.strip_prefix("Max open files"))?;
    match rest.split_whitespace().next()? {
        "unlimited" => Some(UNLIMITED),
        soft => soft.parse().ok(),
    }
}

/// The boot time (`btime`, Unix seconds) in a `/proc/stat` text.
pub fn parse_btime(proc_stat: &str) -> Option<u64> {
    let line = proc_stat.lines().find_map(|l| l.strip_prefix("btime "))?;
    line.trim().parse().ok()
}

/// The entries of a directory (`/proc/self/fd`: the open file descriptors, the one reading
/// the directory included, as Prometheus's procfs library counts them).
fn count_entries(dir: &Path) -> Option<u64> {
    Some(std::fs::read_dir(dir).ok()?.filter(Result::is_ok).count() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT: &str = "11520 (otel-sli) S 1 11512 10276 0 -1 4194304 99 0 0 0 \
        1234 567 0 0 20 0 9 0 5048441 3133440 380 18446744073709551615 93992390279168 \
        93992390299049 140723150473120 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n";

    #[test]
    fn stat_times_are_fields_fourteen_fifteen_and_twenty_two() {
        let t = parse_stat(STAT).expect("parsed");
        assert_eq!(
            t,
            StatTimes {
                utime: 1234,
                stime: 567,
                starttime: 5048441
            }
        );
        assert_eq!(t.cpu_seconds(), 18.01);
        assert_eq!(t.start_time_seconds(1_700_000_000), 1_700_050_484.41);
    }

    #[test]
    fn a_command_name_with_spaces_and_parentheses_is_skipped_to_its_last_parenthesis() {
        let stat = STAT.replace("(otel-sli)", "(a) b (c) ) x)");
        let t = parse_stat(&stat).expect("parsed");
        assert_eq!((t.utime, t.stime, t.starttime), (1234, 567, 5048441));
        let stat = STAT.replace("(otel-sli)", "()");
        assert_eq!(parse_stat(&stat), Some(t), "an empty name");
    }

    #[test]
    fn malformed_stat_text_is_none() {
        for bad in [
            "",
            "garbage",
            "11520 (otel-sli",
            "11520 (otel-sli) S 1 2 3",
            &STAT.replace(" 1234 ", " -5 "),
            &STAT.replace(" 567 ", " x "),
            &STAT.replace(" 5048441 ", " 99999999999999999999999 "),
            &STAT[..STAT.find(" 5048441").expect("in sample")],
        ] {
            assert_eq!(parse_stat(bad), None, "{bad:?}");
        }
    }

    const STATUS: &str = "Name:\totel-sli\nUmask:\t0022\nState:\tS (sleeping)\n\
        Tgid:\t11520\nVmPeak:\t  1290444 kB\nVmSize:\t  1290440 kB\nVmLck:\t       0 kB\n\
        VmHWM:\t   52340 kB\nVmRSS:\t   48212 kB\nRssAnon:\t   30000 kB\nThreads:\t9\n";

    #[test]
    fn status_sizes_are_read_in_bytes() {
        assert_eq!(parse_status_bytes(STATUS, "VmRSS"), Some(48212 * 1024));
        assert_eq!(parse_status_bytes(STATUS, "VmSize"), Some(1290440 * 1024));
        assert_eq!(parse_status_bytes(STATUS, "VmSwap"), None, "absent");
        assert_eq!(
            parse_status_bytes(STATUS, "Vm"),
            None,
            "a key matches a whole name only"
        );
    }

    #[test]
    fn malformed_status_text_is_none() {
        for bad in [
            "",
            "VmRSS:",
            "VmRSS:\t12",
            "VmRSS:\t12 MB",
            "VmRSS:\tx kB",
            "VmRSS:\t-12 kB",
            "VmRSS:\t12 kB extra",
            "VmRSS:\t18446744073709551615 kB",
            "VmRSS 12 kB",
        ] {
            assert_eq!(parse_status_bytes(bad, "VmRSS"), None, "{bad:?}");
        }
    }

    const LIMITS: &str =
        "Limit                     Soft Limit           Hard Limit           Units     \n\
        Max cpu time              unlimited            unlimited            seconds   \n\
        Max processes             96553                96553                processes \n\
        Max open files            1024                 1048576              files     \n\
        Max locked memory         8388608              8388608              bytes     \n";

    #[test]
    fn the_soft_limit_of_open_files_is_read() {
        assert_eq!(parse_max_open_files(LIMITS), Some(1024));
        let unlimited = LIMITS.replace(
            "1024                 1048576",
            "unlimited            unlimited",
        );
        assert_eq!(parse_max_open_files(&unlimited), Some(UNLIMITED));
    }

    #[test]
    fn malformed_limits_text_is_none() {
        for bad in [
            "",
            "Limit  Soft Limit  Hard Limit  Units\nMax processes  10  10  processes\n",
            "Max open files",
            "Max open files   lots   lots   files",
            "Max open files   -1   -1   files",
        ] {
            assert_eq!(parse_max_open_files(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn the_boot_time_is_read_from_proc_stat() {
        let text = "cpu  10 0 20 3000 0 0 0 0 0 0\ncpu0 10 0 20 3000 0 0 0 0 0 0\n\
            intr 123 0 0\nctxt 456\nbtime 1700000000\nprocesses 789\n";
        assert_eq!(parse_btime(text), Some(1_700_000_000));
        for bad in ["", "btime", "btime x", "btime -1", "xbtime 5", "cpu 1 2 3"] {
            assert_eq!(parse_btime(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn this_process_is_read_on_linux() {
        let s = read();
        if !cfg!(any(target_os = "linux", target_os = "android")) {
            assert_eq!(s, ProcessStats::default());
            return;
        }
        assert!(s.cpu_seconds.is_some_and(|c| c >= 0.0), "{s:?}");
        let (rss, vsz) = (s.resident_bytes, s.virtual_bytes);
        assert!(rss.zip(vsz).is_some_and(|(r, v)| 0 < r && r < v), "{s:?}");
        let fds = s.open_fds.zip(s.max_fds);
        assert!(fds.is_some_and(|(o, m)| 3 <= o && o <= m), "{s:?}");
        assert!(s.start_time_seconds.is_some_and(|t| t > 1.5e9), "{s:?}");
    }
}
