//! The process memory budget (`limits.memory_mib`): how much memory otel-sli may use, the
//! default taken from the memory limit of its cgroup (a container's limit), and whether
//! the resident set is over the soft limit, at which receivers refuse new requests with
//! the retryable answers instead of growing. A sampler reads the resident set size a few
//! times a second; receivers read one flag per request.
//!
//! The series and trace tables have their own caps (`limits.max_series`,
//! `completeness.max_traces`) and shed by their documented policies; this budget is what
//! stops everything else (request bodies, queues) from taking the process over its limit.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

/// Share of the budget at which refusing starts: what is in flight when the flag flips
/// still fits under the budget.
const SOFT_PERCENT: u64 = 90;

/// Share of the cgroup limit that becomes the default budget: the rest is for the
/// allocator's slack, page cache of spool files and the kernel's accounting.
const DEFAULT_PERCENT_OF_LIMIT: u64 = 80;

/// How often the resident set size is read.
pub const SAMPLE_EVERY: Duration = Duration::from_millis(100);

/// The budget and the last reading against it.
#[derive(Debug)]
pub struct MemoryBudget {
    budget: u64,
    soft: u64,
    resident: AtomicU64,
    over: AtomicBool,
    retry_after: Duration,
    in_flight: std::sync::Arc<crate::inflight::InFlight>,
}

impl MemoryBudget {
    /// A budget of `budget_bytes`; refused requests are told to retry after `retry_after`.
    pub fn new(budget_bytes: u64, retry_after: Duration) -> Self {
        Self {
            budget: budget_bytes,
            soft: budget_bytes / 100 * SOFT_PERCENT,
            resident: AtomicU64::new(0),
            over: AtomicBool::new(false),
            retry_after,
            // Half the budget for request bytes in flight ([`crate::inflight`]).
            in_flight: std::sync::Arc::new(crate::inflight::InFlight::new(budget_bytes / 2)),
        }
    }

    /// The pool request bodies in flight reserve from: half the budget.
    pub fn in_flight(&self) -> &std::sync::Arc<crate::inflight::InFlight> {
        &self.in_flight
    }

    /// The budget, bytes.
    pub fn budget_bytes(&self) -> u64 {
        self.budget
    }

    /// The resident size above which requests are refused, bytes.
    pub fn soft_limit_bytes(&self) -> u64 {
        self.soft
    }

    /// The last resident size read, bytes.
    pub fn resident_bytes(&self) -> u64 {
        self.resident.load(Ordering::Relaxed)
    }

    /// The delay suggested to refused clients.
    pub fn retry_after(&self) -> Duration {
        self.retry_after
    }

    /// Records a reading of the resident set size.
    pub fn observe(&self, resident_bytes: u64) {
        self.resident.store(resident_bytes, Ordering::Relaxed);
        self.over
            .store(resident_bytes >= self.soft, Ordering::Relaxed);
    }

    /// True while the last reading was at or over the soft limit.
    pub fn over_soft_limit(&self) -> bool {
        self.over.load(Ordering::Relaxed)
    }
}

/// The default budget for a cgroup memory limit: 80% of it.
pub fn default_budget(limit_bytes: u64) -> u64 {
    limit_bytes / 100 * DEFAULT_PERCENT_OF_LIMIT
}

/// The resident set size of this process, from `/proc/self/status`; `None` where there
/// is no procfs.
pub fn resident_bytes() -> Option<u64> {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| parse_vm_rss(&s))
}

/// `VmRSS` of a `/proc/<pid>/status` text, bytes.
pub fn parse_vm_rss(status: &str) -> Option<u64> {
    crate::process::parse_status_bytes(status, "VmRSS")
}

/// The memory limit of the cgroup this process runs in, bytes; `None` without one.
pub fn cgroup_limit() -> Option<u64> {
    let own = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    cgroup_limit_in(Path::new("/sys/fs/cgroup"), &own)
}

/// Values at or above this mean "no limit" in cgroup v1 (it reports a page-rounded
/// `i64::MAX`).
const V1_UNLIMITED: u64 = 1 << 60;

/// The memory limit for a process whose `/proc/self/cgroup` reads `own`, with the cgroup
/// file system mounted at `mount`. The process's own cgroup first, then the mount's root
/// (inside a container's cgroup namespace the two are the same).
pub fn cgroup_limit_in(mount: &Path, own: &str) -> Option<u64> {
    for line in own.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(_), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let rel = path.trim_start_matches('/');
        if controllers.is_empty() {
            // cgroup v2: one unified hierarchy.
            for dir in [mount.join(rel), mount.to_path_buf()] {
                if let Some(v) = read_limit(&dir.join("memory.max")) {
                    return v;
                }
            }
        } else if controllers.split(',').any(|c| c == "memory") {
            let base = mount.join("memory");
            for dir in [base.join(rel), base.clone()] {
                if let Some(v) = read_limit(&dir.join("memory.limit_in_bytes")) {
                    return v.filter(|&b| b < V1_UNLIMITED);
                }
            }
        }
    }
    None
}

/// A limit file: `Some(None)` for `max` (no limit), `Some(Some(bytes))`, or `None` when
/// the file is missing or unreadable.
fn read_limit(file: &Path) -> Option<Option<u64>> {
    let text = std::fs::read_to_string(file).ok()?;
    let t = text.trim();
    if t == "max" {
        return Some(None);
    }
    t.parse::<u64>().ok().map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusing_starts_at_ninety_percent_of_the_budget_and_stops_below_it() {
        let b = MemoryBudget::new(100 << 20, Duration::from_secs(1));
        assert_eq!(b.soft_limit_bytes(), 90 << 20);
        assert!(!b.over_soft_limit());
        b.observe((90 << 20) - 1);
        assert!(!b.over_soft_limit());
        b.observe(90 << 20);
        assert!(b.over_soft_limit());
        assert_eq!(b.resident_bytes(), 90 << 20);
        b.observe(50 << 20);
        assert!(!b.over_soft_limit());
    }

    #[test]
    fn vm_rss_is_read_in_bytes() {
        let status = "Name:\totel-sli\nVmPeak:\t  999 kB\nVmRSS:\t   12345 kB\nThreads: 9\n";
        assert_eq!(parse_vm_rss(status), Some(12345 * 1024));
        assert_eq!(parse_vm_rss("VmRSS: 12 MB\n"), None);
        assert_eq!(parse_vm_rss("Name: x\n"), None);
        assert!(
            resident_bytes().is_some_and(|b| b > 0),
            "this test process has a RSS"
        );
    }

    /// A directory tree removed on drop.
    struct Tree(std::path::PathBuf);
    impl Tree {
        fn path(&self) -> &Path {
            &self.0
        }
    }
    impl Drop for Tree {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn tree(files: &[(&str, &str)]) -> Tree {
        static N: AtomicU64 = AtomicU64::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("otel-sli-cgroup-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        for (path, text) in files {
            let p = dir.join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        }
        Tree(dir)
    }

    #[test]
    fn cgroup_v2_limits_are_read_from_the_own_cgroup_or_the_namespace_root() {
        let own = "0::/kubepods/pod1/ctr\n";
        let t = tree(&[("kubepods/pod1/ctr/memory.max", "536870912\n")]);
        assert_eq!(cgroup_limit_in(t.path(), own), Some(512 << 20));
        // Inside a cgroup namespace the own path is "/" and the files are at the root.
        let t = tree(&[("memory.max", "268435456\n")]);
        assert_eq!(cgroup_limit_in(t.path(), "0::/\n"), Some(256 << 20));
        assert_eq!(cgroup_limit_in(t.path(), own), Some(256 << 20));
        let t = tree(&[("memory.max", "max\n")]);
        assert_eq!(cgroup_limit_in(t.path(), "0::/\n"), None);
        let t = tree(&[]);
        assert_eq!(cgroup_limit_in(t.path(), "0::/\n"), None);
    }

    #[test]
    fn cgroup_v1_limits_are_read_from_the_memory_controller() {
        let own = "12:pids:/docker/abc\n9:memory:/docker/abc\n1:name=systemd:/docker/abc\n";
        let t = tree(&[("memory/docker/abc/memory.limit_in_bytes", "1073741824\n")]);
        assert_eq!(cgroup_limit_in(t.path(), own), Some(1 << 30));
        let t = tree(&[("memory/memory.limit_in_bytes", "9223372036854771712\n")]);
        assert_eq!(cgroup_limit_in(t.path(), own), None, "v1's unlimited");
        let combined = "4:cpu,memory:/\n";
        let t = tree(&[("memory/memory.limit_in_bytes", "104857600\n")]);
        assert_eq!(cgroup_limit_in(t.path(), combined), Some(100 << 20));
    }

    #[test]
    fn the_default_budget_is_eighty_percent_of_the_limit() {
        assert_eq!(default_budget(500 << 20), 400 << 20);
    }
}
