//! Writing the Prometheus text format (0.0.4): each metric family is declared once, with its
//! name, type and help, and its samples are written through it with their labels. Label
//! values are escaped and numbers formatted here, and nowhere else. For scrapers that ask
//! for OpenMetrics 1.0, [`open_metrics`] turns the families' declarations into that form,
//! and samples may carry an exemplar ([`Family::series_sample_with`]).

use crate::sli::exemplar::Exemplar;
use std::fmt::Write;

/// The `Content-Type` of the Prometheus text format.
pub const TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
/// The `Content-Type` of OpenMetrics 1.0.
pub const OPEN_METRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// True when an `Accept` header asks for OpenMetrics (as Prometheus does by default).
pub fn wants_open_metrics(accept: Option<&str>) -> bool {
    accept.is_some_and(|a| {
        a.split(',').any(|part| {
            let mut params = part.split(';').map(str::trim);
            let media = params.next().unwrap_or("");
            let q = params
                .find_map(|p| p.strip_prefix("q="))
                .and_then(|q| q.parse::<f64>().ok())
                .unwrap_or(1.0);
            media.eq_ignore_ascii_case("application/openmetrics-text") && q > 0.0
        })
    })
}

/// A metric family's type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A monotonic total.
    Counter,
    /// A value that goes up and down.
    Gauge,
    /// Cumulative buckets with `_sum` and `_count`.
    Histogram,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// A family whose `# HELP` and `# TYPE` lines are written; its samples follow.
pub struct Family<'a> {
    out: &'a mut String,
    name: &'a str,
}

/// Declares the family `name` in `out` and returns the writer of its samples.
pub fn family<'a>(out: &'a mut String, name: &'a str, kind: Kind, help: &str) -> Family<'a> {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {}", kind.name());
    Family { out, name }
}

impl Family<'_> {
    /// A sample with `labels` (name, unescaped value), in that order.
    pub fn sample(&mut self, labels: &[(&str, &str)], value: impl std::fmt::Display) {
        self.out.push_str(self.name);
        if !labels.is_empty() {
            self.out.push('{');
            push_labels(self.out, labels.iter().copied(), false);
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
    }

    /// A sample of one SLI series under the family's name plus `suffix` (`_bucket`, `_sum`):
    /// its labels (`names` and `values`; a dimension with an empty value is left out, as
    /// Prometheus reads an empty label as an absent one), then `extra`.
    pub fn series_sample(
        &mut self,
        suffix: &str,
        names: &[String],
        values: &[Box<str>],
        extra: &[(&str, &str)],
        value: impl std::fmt::Display,
    ) {
        self.series_sample_with(suffix, names, values, extra, value, None);
    }

    /// [`Family::series_sample`] followed by an OpenMetrics exemplar: the request's trace
    /// and span ids, `value` (e.g. its duration) and its end time. Only for OpenMetrics
    /// output, on counters and histogram buckets.
    pub fn series_sample_with(
        &mut self,
        suffix: &str,
        names: &[String],
        values: &[Box<str>],
        extra: &[(&str, &str)],
        value: impl std::fmt::Display,
        exemplar: Option<(&Exemplar, f64)>,
    ) {
        self.out.push_str(self.name);
        self.out.push_str(suffix);
        self.out.push('{');
        let series = names
            .iter()
            .zip(values.iter())
            .enumerate()
            .filter(|(i, (_, v))| *i < 2 || !v.is_empty())
            .map(|(_, (n, v))| (n.as_str(), &**v));
        push_labels(self.out, series, false);
        push_labels(self.out, extra.iter().copied(), true);
        self.out.push('}');
        let _ = write!(self.out, " {value}");
        if let Some((e, v)) = exemplar {
            // The exemplar's labels are 73 characters, within OpenMetrics' 128.
            let _ = write!(
                self.out,
                " # {{trace_id=\"{}\",span_id=\"{}\"}} {} {}.{:03}",
                e.trace_id_hex(),
                e.span_id_hex(),
                float(v),
                e.end_unix_nanos / 1_000_000_000,
                e.end_unix_nanos / 1_000_000 % 1000,
            );
        }
        self.out.push('\n');
    }
}

/// Turns text written in the 0.0.4 format into OpenMetrics 1.0: a counter family is
/// declared without its `_total` suffix (its samples keep it), a counter whose name lacks
/// the suffix is declared `unknown`, and `# EOF` ends the text. Samples are left as they
/// are.
pub fn open_metrics(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 16);
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
            // The TYPE line that follows says how the family is named.
            let declared = match lines.peek().and_then(|l| l.strip_prefix("# TYPE ")) {
                Some(t) => declared_name(t).0,
                None => name.to_string(),
            };
            let _ = writeln!(out, "# HELP {declared} {help}");
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = declared_name(rest);
            let _ = writeln!(out, "# TYPE {name} {kind}");
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    out.push_str("# EOF\n");
    out
}

/// The OpenMetrics family name and type for a 0.0.4 `# TYPE` line's `name type`.
fn declared_name(type_line: &str) -> (String, &str) {
    let (name, kind) = type_line.split_once(' ').unwrap_or((type_line, "unknown"));
    match (kind, name.strip_suffix("_total")) {
        ("counter", Some(base)) => (base.to_string(), "counter"),
        ("counter", None) => (name.to_string(), "unknown"),
        _ => (name.to_string(), kind),
    }
}

/// `a="x",b="y"`, with a leading comma when `more` (labels already written before).
fn push_labels<'l>(out: &mut String, labels: impl Iterator<Item = (&'l str, &'l str)>, more: bool) {
    for (i, (n, v)) in labels.enumerate() {
        if more || i > 0 {
            out.push(',');
        }
        out.push_str(n);
        out.push_str("=\"");
        escape_into(v, out);
        out.push('"');
    }
}

/// Escapes a label value into `out`.
fn escape_into(v: &str, out: &mut String) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// A sample value: `+Inf`/`-Inf` for infinities, else the shortest form that reads back
/// to the same number.
pub fn float(v: f64) -> String {
    if v.is_infinite() {
        if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        }
    } else {
        format!("{v}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_are_declared_once_and_labels_escaped() {
        let mut out = String::new();
        let mut f = family(&mut out, "x_total", Kind::Counter, "Things.");
        f.sample(&[], 3);
        f.sample(&[("svc", "a\"b\\c\nd"), ("kind", "k")], 1.5);
        let mut s = family(&mut out, "lat", Kind::Histogram, "Latency.");
        let names = ["service".to_string(), "feature".into(), "version".into()];
        let values: [Box<str>; 3] = ["pay".into(), "".into(), "".into()];
        s.series_sample("_bucket", &names, &values, &[("le", "+Inf")], 7);
        s.series_sample("_count", &names, &values, &[], 7);
        assert_eq!(
            out,
            "# HELP x_total Things.\n# TYPE x_total counter\nx_total 3\n\
             x_total{svc=\"a\\\"b\\\\c\\nd\",kind=\"k\"} 1.5\n\
             # HELP lat Latency.\n# TYPE lat histogram\n\
             lat_bucket{service=\"pay\",feature=\"\",le=\"+Inf\"} 7\n\
             lat_count{service=\"pay\",feature=\"\"} 7\n",
            "an empty dimension is left out; service and feature never are"
        );
        assert_eq!(float(f64::INFINITY), "+Inf");
        assert_eq!(float(0.25), "0.25");
    }

    #[test]
    fn open_metrics_declarations_and_eof() {
        let text = "# HELP a_total As.\n# TYPE a_total counter\na_total 1\n\
                    # HELP b_bytes Bs.\n# TYPE b_bytes counter\nb_bytes 2\n\
                    # HELP g G.\n# TYPE g gauge\ng 3\n";
        assert_eq!(
            open_metrics(text),
            "# HELP a As.\n# TYPE a counter\na_total 1\n\
             # HELP b_bytes Bs.\n# TYPE b_bytes unknown\nb_bytes 2\n\
             # HELP g G.\n# TYPE g gauge\ng 3\n# EOF\n"
        );
    }

    #[test]
    fn exemplars_follow_the_value() {
        use crate::sli::classify::Reason;
        let e = Exemplar {
            trace_id: [0xab; 16],
            span_id: [0xcd; 8],
            duration_ns: 50_000_000,
            end_unix_nanos: 1_733_512_345_067_000_000,
            reason: Reason::http(503),
        };
        let mut out = String::new();
        let mut f = family(&mut out, "x", Kind::Histogram, "X.");
        let names = ["service".to_string(), "feature".into()];
        let values: [Box<str>; 2] = ["pay".into(), "f".into()];
        f.series_sample_with(
            "_bucket",
            &names,
            &values,
            &[("le", "0.1")],
            4,
            Some((&e, 0.05)),
        );
        let line = out.lines().last().unwrap_or("");
        assert_eq!(
            line,
            format!(
                "x_bucket{{service=\"pay\",feature=\"f\",le=\"0.1\"}} 4 # {{trace_id=\"{}\",span_id=\"{}\"}} 0.05 1733512345.067",
                "ab".repeat(16),
                "cd".repeat(8)
            )
        );
    }

    #[test]
    fn accept_headers() {
        let prometheus = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert!(wants_open_metrics(Some(prometheus)));
        assert!(wants_open_metrics(Some("Application/OpenMetrics-Text")));
        assert!(!wants_open_metrics(Some("text/plain;version=0.0.4")));
        assert!(!wants_open_metrics(Some(
            "application/openmetrics-text;q=0"
        )));
        assert!(!wants_open_metrics(Some("*/*")));
        assert!(!wants_open_metrics(None));
    }
}
