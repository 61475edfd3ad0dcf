//! Writing the Prometheus text format (0.0.4): each metric family is declared once, with its
//! name, type and help, and its samples are written through it with their labels. Label
//! values are escaped and numbers formatted here, and nowhere else.

use std::fmt::Write;

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
        let _ = writeln!(self.out, " {value}");
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
}
