//! `--openslo` as users run it: the example OpenSLO file validates together with the
//! example configuration, and each unmappable file in `tests/data/openslo` is refused
//! with the document and key named in the message.

use otel_sli::slo::def::SliKind;
use std::process::{Command, Output};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_otel-sli");
const CONFIG: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/examples/otel-sli.yaml");
const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/examples/openslo.yaml");
const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/openslo");

fn validate(openslo: &str) -> Output {
    Command::new(BIN)
        .args(["validate", "--config", CONFIG, "--openslo", openslo])
        .output()
        .expect("runs")
}

#[test]
fn the_example_adds_its_slos_to_the_configuration() {
    let out = validate(EXAMPLE);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Three SLOs in otel-sli.yaml, two in openslo.yaml.
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("{CONFIG}: ok (5 SLOs)")
    );
}

#[test]
fn the_example_maps_as_documented() {
    let slos = otel_sli::slo::openslo::load(std::path::Path::new(EXAMPLE)).expect("maps");
    let [add, read] = slos.as_slice() else {
        panic!("two SLOs expected, got {slos:?}");
    };
    assert_eq!(add.name, "cart-add-availability");
    assert_eq!(
        (add.service.as_str(), add.feature.pattern()),
        ("cart", "POST /cart/items")
    );
    assert_eq!(add.sli, SliKind::Availability);
    assert!((add.objective - 0.999).abs() < 1e-12);
    assert_eq!(add.window, Duration::from_secs(28 * 86_400));
    assert_eq!(add.labels.get("tier").map(String::as_str), Some("tier-1"));
    assert_eq!(read.name, "cart-read-latency");
    assert!(read.feature.is_glob() && read.matches("cart", "GET /cart/items"));
    assert_eq!(
        read.sli,
        SliKind::Latency {
            threshold: Duration::from_millis(250)
        }
    );
    assert!((read.objective - 0.99).abs() < 1e-12);
    assert_eq!(read.window, Duration::from_secs(7 * 86_400));
}

#[test]
fn unmappable_files_are_refused_naming_document_and_key() {
    let cases = [
        (
            "timeslices.yaml",
            "document 1 (search-availability): spec.budgetingMethod: Timeslices is not supported; use Occurrences",
        ),
        (
            "calendar.yaml",
            "document 1 (search-latency): spec.timeWindow[0].calendar: calendar-aligned windows are not supported",
        ),
        (
            "alert-policy.yaml",
            "document 2 (search-burn): kind: AlertPolicy documents are not supported",
        ),
        (
            "prometheus-source.yaml",
            "document 1 (search-availability): spec.indicator.spec.ratioMetric.total.metricSource.type: metric source type \"Prometheus\" cannot be read",
        ),
        (
            "greater-than.yaml",
            "document 1 (search-latency): spec.objectives[0].op: gt cannot be mapped",
        ),
        (
            "name-clash.yaml",
            "SLO name \"checkout-latency\" is already defined",
        ),
    ];
    for (file, want) in cases {
        let path = format!("{DATA}/{file}");
        let out = validate(&path);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{file} was accepted");
        assert!(
            err.contains(&format!("invalid OpenSLO file {path}")),
            "{file}: {err}"
        );
        assert!(err.contains(want), "{file}: wanted {want:?} in\n{err}");
    }
}

#[test]
fn a_missing_file_is_refused() {
    let out = validate("/nonexistent/openslo.yaml");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read /nonexistent/openslo.yaml"));
}
