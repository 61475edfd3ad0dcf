//! The standard `process_*` families on `/metrics`, read from procfs: declared as the
//! Prometheus Go client declares them, with figures that agree with each other and with
//! the clock. The server runs in this test's process, so they describe this process.

mod common;

use common::{sample, TestServer};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const FAMILIES: [(&str, &str, &str); 6] = [
    (
        "process_cpu_seconds_total",
        "counter",
        "Total user and system CPU time spent in seconds.",
    ),
    (
        "process_open_fds",
        "gauge",
        "Number of open file descriptors.",
    ),
    (
        "process_max_fds",
        "gauge",
        "Maximum number of open file descriptors.",
    ),
    (
        "process_virtual_memory_bytes",
        "gauge",
        "Virtual memory size in bytes.",
    ),
    (
        "process_resident_memory_bytes",
        "gauge",
        "Resident memory size in bytes.",
    ),
    (
        "process_start_time_seconds",
        "gauge",
        "Start time of the process since unix epoch in seconds.",
    ),
];

fn value(text: &str, name: &str) -> f64 {
    sample(text, name).unwrap_or_else(|| panic!("no sample {name} in\n{text}"))
}

/// Keeps one core busy for about `d`.
fn burn(d: Duration) -> u64 {
    let start = Instant::now();
    let mut x = 0u64;
    while start.elapsed() < d {
        for i in 0..10_000u64 {
            x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(i));
        }
    }
    x
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn process_families_are_declared_like_the_go_client_and_agree_with_each_other() {
    let server = TestServer::start("").await;
    let text = server.metrics().await;
    if !cfg!(target_os = "linux") {
        assert!(
            !text.contains("\nprocess_"),
            "no procfs, no figures:\n{text}"
        );
        server.stop().await;
        return;
    }
    for (name, kind, help) in FAMILIES {
        for line in [
            format!("# HELP {name} {help}"),
            format!("# TYPE {name} {kind}"),
        ] {
            let n = text.lines().filter(|l| *l == line).count();
            assert_eq!(n, 1, "{line:?} once in\n{text}");
        }
    }

    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs_f64();
    let start = value(&text, "process_start_time_seconds");
    assert!((now - start).abs() < 120.0, "started at {start}, now {now}");
    let fract = text
        .lines()
        .find_map(|l| l.strip_prefix("process_start_time_seconds "))
        .expect("sample line");
    assert!(!fract.contains('e'), "written in plain decimals: {fract}");

    let rss = value(&text, "process_resident_memory_bytes");
    let vsz = value(&text, "process_virtual_memory_bytes");
    assert!(rss > 1024.0 * 1024.0, "resident {rss}");
    assert!(rss < vsz, "resident {rss}, virtual {vsz}");

    let open = value(&text, "process_open_fds");
    let max = value(&text, "process_max_fds");
    assert!(open >= 3.0, "stdin, stdout, stderr at least: {open}");
    assert!(open <= max, "open {open}, soft limit {max}");

    // CPU time is counted in ticks of 10 ms: burn until it moves, and it never goes back.
    let before = value(&text, "process_cpu_seconds_total");
    assert!(before >= 0.0, "{before}");
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut last = before;
    loop {
        tokio::task::spawn_blocking(|| burn(Duration::from_millis(100)))
            .await
            .expect("burn");
        let now = value(&server.metrics().await, "process_cpu_seconds_total");
        assert!(now >= last, "the counter went back from {last} to {now}");
        last = now;
        if now > before {
            break;
        }
        assert!(Instant::now() < deadline, "CPU seconds stayed at {before}");
    }
    server.stop().await;
}
