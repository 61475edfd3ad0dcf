//! OpenSLO v1 documents mapped onto `otel-sli` SLOs. This module owns reading an OpenSLO
//! file (many YAML documents), resolving `indicatorRef`s to `kind: SLI` documents, mapping
//! each `kind: SLO` onto a [`RawSlo`] and refusing, with the document and key named, what
//! has no `otel-sli` meaning. Validation is not done here: the mapped SLOs go through
//! [`crate::slo::config::slos`] like the configuration's own `slos:` list, and its errors
//! are translated back to OpenSLO keys. It must not touch the rest of the configuration.
//! `docs/openslo.md` documents the mapping.

use crate::config::units::HumanDuration;
use crate::config::ConfigError;
use crate::sli::classify::label_name;
use crate::slo::config::RawSlo;
use crate::slo::def::SloDef;
use serde::Deserialize;
use serde_json::{Map, Value};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::Duration;
use thiserror::Error;

/// The only `apiVersion` read.
const API_VERSION: &str = "openslo/v1";

/// Why an OpenSLO file could not be used.
#[derive(Debug, Error)]
pub enum OpenSloError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A document is not valid YAML.
    #[error("{file}: document {document}: {reason}")]
    Yaml {
        /// The file.
        file: String,
        /// Position of the document in the file, from 1.
        document: usize,
        /// What the YAML parser said.
        reason: String,
    },
    /// A document holds a key that is missing, malformed or has no `otel-sli` meaning.
    #[error("{file}: document {document}{}: {key}: {reason}", named(.name))]
    Document {
        /// The file.
        file: String,
        /// Position of the document in the file, from 1.
        document: usize,
        /// `metadata.name` of the document, when it has one.
        name: Option<String>,
        /// Key path inside the document, e.g. `spec.budgetingMethod`.
        key: String,
        /// What is wrong and, where it helps, what to write instead.
        reason: String,
    },
    /// The file defines no SLO.
    #[error("{file}: no kind: SLO document (SLI and Service documents alone define no SLO)")]
    NoSlo {
        /// The file.
        file: String,
    },
    /// Validation failed in a way that could not be traced back to a document.
    #[error("{file}: {source}")]
    Config {
        /// The file.
        file: String,
        /// The validation error.
        source: ConfigError,
    },
}

fn named(name: &Option<String>) -> String {
    name.as_ref()
        .map_or_else(String::new, |n| format!(" ({n})"))
}

/// Reads the OpenSLO documents in `path` and returns the SLOs they define.
pub fn load(path: &Path) -> Result<Vec<SloDef>, OpenSloError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| OpenSloError::Read {
        path: file.clone(),
        source,
    })?;
    parse(&text, &file)
}

/// Maps the OpenSLO documents in `text`; `file` names it in errors.
pub fn parse(text: &str, file: &str) -> Result<Vec<SloDef>, OpenSloError> {
    let values = documents(text, file)?;
    let docs = values
        .iter()
        .map(|(index, value)| {
            header(*index, value).map_err(|f| doc_error(file, *index, peek_name(value), f))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let slis = sli_index(&docs, file)?;
    let mapped = docs
        .iter()
        .filter(|d| d.kind == Kind::Slo)
        .map(|d| map_slo(d, &slis, file))
        .collect::<Result<Vec<_>, _>>()?;
    if mapped.is_empty() {
        return Err(OpenSloError::NoSlo {
            file: file.to_string(),
        });
    }
    let raw: Vec<RawSlo> = mapped.iter().map(|m| m.raw.clone()).collect();
    crate::slo::config::slos(&raw, file).map_err(|e| translate(e, &mapped, file))
}

/// The YAML documents of `text` with their positions (from 1); empty documents are skipped.
/// Stops at the first error: after a failure the iterator keeps yielding it.
fn documents(text: &str, file: &str) -> Result<Vec<(usize, Value)>, OpenSloError> {
    let mut out = Vec::new();
    for (i, de) in serde_norway::Deserializer::from_str(text).enumerate() {
        let value = Value::deserialize(de).map_err(|e| OpenSloError::Yaml {
            file: file.to_string(),
            document: i + 1,
            reason: e.to_string(),
        })?;
        if !value.is_null() {
            out.push((i + 1, value));
        }
    }
    Ok(out)
}

/// A problem at a key of one document, before the file and document are attached.
#[derive(Debug)]
struct Fault {
    key: String,
    reason: String,
}

fn doc_error(file: &str, document: usize, name: Option<String>, f: Fault) -> OpenSloError {
    OpenSloError::Document {
        file: file.to_string(),
        document,
        name,
        key: f.key,
        reason: f.reason,
    }
}

/// `metadata.name` when it is a string, for labelling errors in documents that fail early.
fn peek_name(value: &Value) -> Option<String> {
    value
        .get("metadata")?
        .get("name")?
        .as_str()
        .map(str::to_string)
}

/// A value and the key path that leads to it.
#[derive(Clone, Debug)]
struct Node<'v> {
    value: &'v Value,
    path: String,
}

impl<'v> Node<'v> {
    fn root(value: &'v Value) -> Self {
        Self {
            value,
            path: String::new(),
        }
    }

    fn key_path(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    fn fault(&self, reason: impl Into<String>) -> Fault {
        let key = if self.path.is_empty() {
            "(document)".to_string()
        } else {
            self.path.clone()
        };
        Fault {
            key,
            reason: reason.into(),
        }
    }

    /// The child at `key`; `None` when absent or null.
    fn get(&self, key: &str) -> Option<Node<'v>> {
        self.value
            .get(key)
            .filter(|v| !v.is_null())
            .map(|value| Node {
                value,
                path: self.key_path(key),
            })
    }

    /// The child at `key`, or a fault saying it is required and `why`.
    fn require(&self, key: &str, why: &str) -> Result<Node<'v>, Fault> {
        self.get(key).ok_or_else(|| Fault {
            key: self.key_path(key),
            reason: format!("required{why}"),
        })
    }

    fn map(&self) -> Result<&'v Map<String, Value>, Fault> {
        self.value
            .as_object()
            .ok_or_else(|| self.fault("must be a mapping"))
    }

    fn str(&self) -> Result<&'v str, Fault> {
        match self.value.as_str() {
            Some(s) if !s.is_empty() => Ok(s),
            Some(_) => Err(self.fault("must not be empty")),
            None => Err(self.fault("must be a string")),
        }
    }

    fn number(&self, example: &str) -> Result<f64, Fault> {
        self.value
            .as_f64()
            .ok_or_else(|| self.fault(format!("must be a number (e.g. {example})")))
    }

    fn list(&self) -> Result<Vec<Node<'v>>, Fault> {
        let items = self
            .value
            .as_array()
            .ok_or_else(|| self.fault("must be a list"))?;
        Ok(items
            .iter()
            .enumerate()
            .map(|(i, value)| Node {
                value,
                path: format!("{}[{i}]", self.path),
            })
            .collect())
    }

    /// Fails on the first key of this mapping that is not in `allowed`.
    fn only_keys(&self, allowed: &[&str]) -> Result<(), Fault> {
        match self.map()?.keys().find(|k| !allowed.contains(&k.as_str())) {
            Some(k) => Err(Fault {
                key: self.key_path(k),
                reason: format!("unknown key (expected one of: {})", allowed.join(", ")),
            }),
            None => Ok(()),
        }
    }

    /// Fails when `key` is present, explaining `why` it cannot be mapped.
    fn refuse(&self, key: &str, why: &str) -> Result<(), Fault> {
        match self.get(key) {
            Some(n) => Err(n.fault(why)),
            None => Ok(()),
        }
    }
}

/// The document kinds read; the others are refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Slo,
    Sli,
    Service,
}

/// A document whose `apiVersion`, `kind` and `metadata` are acceptable.
#[derive(Debug)]
struct Doc<'v> {
    index: usize,
    name: String,
    kind: Kind,
    root: Node<'v>,
}

fn header(index: usize, value: &Value) -> Result<Doc<'_>, Fault> {
    let root = Node::root(value);
    root.map()?;
    root.only_keys(&["apiVersion", "kind", "metadata", "spec"])?;
    let version = root.require("apiVersion", " (openslo/v1)")?;
    if version.str()? != API_VERSION {
        return Err(version.fault(format!(
            "{:?} is not supported; otel-sli reads {API_VERSION} documents",
            version.str()?
        )));
    }
    let kind = kind(&root.require("kind", " (SLO, SLI or Service)")?)?;
    let metadata = root.require("metadata", "")?;
    metadata.only_keys(&["name", "displayName", "labels", "annotations"])?;
    let name = metadata.require("name", "")?.str()?.to_string();
    Ok(Doc {
        index,
        name,
        kind,
        root,
    })
}

fn kind(node: &Node) -> Result<Kind, Fault> {
    match node.str()? {
        "SLO" => Ok(Kind::Slo),
        "SLI" => Ok(Kind::Sli),
        "Service" => Ok(Kind::Service),
        k @ ("AlertPolicy" | "AlertCondition" | "AlertNotificationTarget") => Err(node.fault(
            format!("{k} documents are not supported: otel-sli alerts come from the burn-rate rules under slo.alerts in its configuration"),
        )),
        "DataSource" => Err(node.fault(
            "DataSource documents are not supported: otel-sli computes SLIs from the spans it receives, so metric sources use type: otel-sli and need no DataSource",
        )),
        k => Err(node.fault(format!(
            "unknown kind {k:?} (OpenSLO v1 kinds: SLO, SLI, Service, DataSource, AlertPolicy, AlertCondition, AlertNotificationTarget)"
        ))),
    }
}

/// `kind: SLI` documents by `metadata.name`.
fn sli_index<'d, 'v>(
    docs: &'d [Doc<'v>],
    file: &str,
) -> Result<HashMap<&'d str, &'d Doc<'v>>, OpenSloError> {
    let mut slis: HashMap<&str, &Doc> = HashMap::new();
    for d in docs.iter().filter(|d| d.kind == Kind::Sli) {
        if let Some(first) = slis.insert(&d.name, d) {
            return Err(doc_error(
                file,
                d.index,
                Some(d.name.clone()),
                Fault {
                    key: "metadata.name".into(),
                    reason: format!(
                        "SLI name {:?} is already used by document {}",
                        d.name, first.index
                    ),
                },
            ));
        }
    }
    Ok(slis)
}

/// An SLO mapped onto the native form, and where its values came from.
#[derive(Debug)]
struct Mapped {
    raw: RawSlo,
    document: usize,
    name: String,
    /// `spec.indicator` or `spec.indicatorRef`.
    indicator_key: &'static str,
    /// `…target` or `…targetPercent` of the objective.
    objective_key: String,
}

impl Mapped {
    /// The OpenSLO key a native `RawSlo` key came from.
    fn openslo_key(&self, native: &str) -> String {
        match native {
            "name" => "metadata.name".into(),
            "service" => "spec.service".into(),
            "feature" | "sli" => self.indicator_key.into(),
            "threshold" => "spec.objectives[0].value".into(),
            "objective" => self.objective_key.clone(),
            "window" => "spec.timeWindow[0].duration".into(),
            "description" => "spec.description".into(),
            other => match other.strip_prefix("labels.") {
                Some(label) => format!("metadata.labels.{label}"),
                None => other.to_string(),
            },
        }
    }
}

fn map_slo(doc: &Doc, slis: &HashMap<&str, &Doc>, file: &str) -> Result<Mapped, OpenSloError> {
    let at = |f| doc_error(file, doc.index, Some(doc.name.clone()), f);
    let spec = slo_spec(doc).map_err(at)?;
    let service = spec
        .require("service", "")
        .and_then(|n| n.str().map(str::to_string))
        .map_err(at)?;
    let (indicator, indicator_key) = indicator(doc, &spec, slis, &service, file)?;
    let (raw, objective_key) = slo_fields(doc, &spec, service, indicator).map_err(at)?;
    Ok(Mapped {
        raw,
        document: doc.index,
        name: doc.name.clone(),
        indicator_key,
        objective_key,
    })
}

/// `spec` of a `kind: SLO` document, its keys checked.
fn slo_spec<'v>(doc: &Doc<'v>) -> Result<Node<'v>, Fault> {
    let spec = doc.root.require("spec", "")?;
    spec.only_keys(&[
        "description",
        "service",
        "indicator",
        "indicatorRef",
        "timeWindow",
        "budgetingMethod",
        "objectives",
        "alertPolicies",
    ])?;
    if let Some(p) = spec.get("alertPolicies") {
        if !p.list()?.is_empty() {
            return Err(p.fault(
                "alert policies are not supported: otel-sli alerts come from the burn-rate rules under slo.alerts in its configuration",
            ));
        }
    }
    Ok(spec)
}

/// Everything of the SLO but its indicator, which `indicator` mapped.
fn slo_fields(
    doc: &Doc,
    spec: &Node,
    service: String,
    indicator: Indicator,
) -> Result<(RawSlo, String), Fault> {
    let window = window(spec)?;
    budgeting_method(spec)?;
    let objective = objective(spec, indicator.latency)?;
    let labels = labels(&doc.root.require("metadata", "")?)?;
    let description = match spec.get("description") {
        Some(d) => Some(d.str()?.to_string()),
        None => None,
    };
    let sli = if indicator.latency {
        "latency"
    } else {
        "availability"
    };
    let raw = RawSlo {
        name: Some(doc.name.clone()),
        service: Some(service),
        feature: Some(indicator.feature),
        sli: Some(sli.into()),
        threshold: objective.threshold.map(HumanDuration),
        objective: Some(objective.percent),
        window: Some(HumanDuration(window)),
        description,
        labels,
    };
    Ok((raw, objective.key))
}

/// What an SLI says about the requests: which feature, and whether latency counts.
#[derive(Debug)]
struct Indicator {
    feature: String,
    latency: bool,
}

/// The SLO's indicator, inline or referenced; a problem inside a referenced `kind: SLI`
/// document is reported against that document.
fn indicator(
    doc: &Doc,
    spec: &Node,
    slis: &HashMap<&str, &Doc>,
    service: &str,
    file: &str,
) -> Result<(Indicator, &'static str), OpenSloError> {
    let at = |f| doc_error(file, doc.index, Some(doc.name.clone()), f);
    match (spec.get("indicator"), spec.get("indicatorRef")) {
        (Some(inline), None) => {
            inline.only_keys(&["metadata", "spec"]).map_err(at)?;
            let sli = inline.require("spec", "").map_err(at)?;
            Ok((sli_spec(&sli, service).map_err(at)?, "spec.indicator"))
        }
        (None, Some(r)) => {
            let name = r.str().map_err(at)?;
            let sli_doc = slis.get(name).ok_or_else(|| {
                at(r.fault(format!("no kind: SLI document named {name:?} in this file")))
            })?;
            let in_sli = |mut f: Fault| {
                f.reason = format!(
                    "{} (SLI referenced by SLO {:?} in document {})",
                    f.reason, doc.name, doc.index
                );
                doc_error(file, sli_doc.index, Some(sli_doc.name.clone()), f)
            };
            let sli = sli_doc.root.require("spec", "").map_err(in_sli)?;
            Ok((
                sli_spec(&sli, service).map_err(in_sli)?,
                "spec.indicatorRef",
            ))
        }
        (Some(_), Some(r)) => Err(at(r.fault("give indicator or indicatorRef, not both"))),
        (None, None) => Err(at(spec.fault(
            "requires indicator (an inline SLI) or indicatorRef (the name of a kind: SLI document)",
        ))),
    }
}

/// The `spec` of an SLI, inline or in its own document.
fn sli_spec(sli: &Node, service: &str) -> Result<Indicator, Fault> {
    sli.only_keys(&["description", "thresholdMetric", "ratioMetric"])?;
    match (sli.get("ratioMetric"), sli.get("thresholdMetric")) {
        (Some(ratio), None) => Ok(Indicator {
            feature: ratio_metric(&ratio, service)?,
            latency: false,
        }),
        (None, Some(threshold)) => {
            threshold.only_keys(&["metricSource"])?;
            let source = threshold.require("metricSource", "")?;
            Ok(Indicator {
                feature: metric_source(&source, service)?,
                latency: true,
            })
        }
        (Some(_), Some(t)) => Err(t.fault("give ratioMetric or thresholdMetric, not both")),
        (None, None) => {
            Err(sli.fault("requires ratioMetric (availability) or thresholdMetric (latency)"))
        }
    }
}

/// `ratioMetric`: good or bad over total, both counting the same feature.
fn ratio_metric(ratio: &Node, service: &str) -> Result<String, Fault> {
    let precomputed =
        "precomputed ratios cannot be mapped: otel-sli counts the requests itself; use good or bad with total";
    ratio.refuse("raw", precomputed)?;
    ratio.refuse("rawType", precomputed)?;
    ratio.only_keys(&["counter", "good", "bad", "total"])?;
    if let Some(c) = ratio.get("counter") {
        if c.value != &Value::Bool(true) {
            return Err(c.fault(
                "must be true or absent: otel-sli counts requests, it does not read gauges",
            ));
        }
    }
    let total = ratio.require("total", "")?;
    let total_feature = metric_source(&total.require("metricSource", "")?, service)?;
    let numerator = match (ratio.get("good"), ratio.get("bad")) {
        (Some(n), None) | (None, Some(n)) => n,
        (Some(_), Some(b)) => return Err(b.fault("give good or bad, not both")),
        (None, None) => return Err(ratio.fault("requires good or bad, with total")),
    };
    let source = numerator.require("metricSource", "")?;
    let feature = metric_source(&source, service)?;
    if feature != total_feature {
        return Err(Fault {
            key: format!("{}.spec.feature", source.path),
            reason: format!(
                "{feature:?} differs from the feature of total ({total_feature:?}); otel-sli tells good from bad within one feature's requests"
            ),
        });
    }
    Ok(total_feature)
}

/// A `metricSource` that points at `otel-sli`; returns its feature.
fn metric_source(source: &Node, service: &str) -> Result<String, Fault> {
    source.refuse(
        "metricSourceRef",
        "DataSource references are not supported: use type: otel-sli with spec.feature",
    )?;
    source.only_keys(&["type", "spec"])?;
    let kind = source.require("type", " (otel-sli)")?;
    if !matches!(
        kind.str()?.to_ascii_lowercase().as_str(),
        "otel-sli" | "otelsli"
    ) {
        return Err(kind.fault(format!(
            "metric source type {:?} cannot be read: otel-sli evaluates the spans it receives; use type: otel-sli",
            kind.str()?
        )));
    }
    let spec = source.require("spec", " (feature, and optionally service)")?;
    spec.only_keys(&["feature", "service"])?;
    let feature = spec
        .require(
            "feature",
            " (a feature name or glob, e.g. \"POST /checkout\")",
        )?
        .str()?
        .to_string();
    if let Some(s) = spec.get("service") {
        if s.str()? != service {
            return Err(s.fault(format!(
                "{:?} differs from the SLO's spec.service ({service:?})",
                s.str()?
            )));
        }
    }
    Ok(feature)
}

/// `timeWindow`: exactly one rolling window.
fn window(spec: &Node) -> Result<Duration, Fault> {
    let windows = spec
        .require(
            "timeWindow",
            ": otel-sli needs a rolling window, e.g. [{duration: 30d, isRolling: true}]",
        )?
        .list()?;
    let [w] = windows.as_slice() else {
        return Err(spec.require("timeWindow", "")?.fault(format!(
            "exactly one window is supported (found {})",
            windows.len()
        )));
    };
    w.only_keys(&["duration", "isRolling", "calendar"])?;
    let calendar = "calendar-aligned windows are not supported; otel-sli windows are rolling";
    w.refuse("calendar", calendar)?;
    let rolling = w.require("isRolling", ": true (otel-sli windows are rolling)")?;
    match rolling.value {
        Value::Bool(true) => {}
        Value::Bool(false) => return Err(rolling.fault(calendar)),
        _ => return Err(rolling.fault("must be true")),
    }
    let duration = w.require("duration", " (e.g. 30d)")?;
    shorthand(duration.str()?).map_err(|reason| duration.fault(reason))
}

/// An OpenSLO duration shorthand (`30d`, `4w`, `12h`, `90m`) of fixed length.
fn shorthand(s: &str) -> Result<Duration, String> {
    let bad =
        || format!("{s:?} is not a duration (a positive integer then m, h, d or w, e.g. 30d)");
    let split = s.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (number, unit) = s.split_at(split);
    let n: u64 = number.parse().map_err(|_| bad())?;
    let unit_secs: u64 = match unit {
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        "M" | "Q" | "Y" => {
            return Err(format!(
                "{s:?}: months, quarters and years have no fixed length; write the rolling window in days or weeks (e.g. 30d, 4w)"
            ))
        }
        _ => return Err(bad()),
    };
    match n.checked_mul(unit_secs) {
        Some(secs) if secs > 0 => Ok(Duration::from_secs(secs)),
        _ => Err(bad()),
    }
}

/// `budgetingMethod`: only `Occurrences`.
fn budgeting_method(spec: &Node) -> Result<(), Fault> {
    let m = spec.require("budgetingMethod", " (Occurrences)")?;
    match m.str()? {
        "Occurrences" => Ok(()),
        method @ ("Timeslices" | "RatioTimeslices") => Err(m.fault(format!(
            "{method} is not supported; use Occurrences (otel-sli counts good and bad requests over the window, not time slices)"
        ))),
        other => Err(m.fault(format!(
            "unknown budgeting method {other:?} (Occurrences, Timeslices or RatioTimeslices; otel-sli supports Occurrences)"
        ))),
    }
}

/// The one objective: its target as a percentage, and the latency threshold.
#[derive(Debug)]
struct Objective {
    percent: f64,
    /// The key the target came from.
    key: String,
    threshold: Option<Duration>,
}

fn objective(spec: &Node, latency: bool) -> Result<Objective, Fault> {
    let objectives = spec.require("objectives", "")?.list()?;
    let [o] = objectives.as_slice() else {
        return Err(spec.require("objectives", "")?.fault(format!(
            "exactly one objective is supported (found {}); write one SLO per objective",
            objectives.len()
        )));
    };
    let timeslices = "only used by Timeslices budgeting, which otel-sli does not support";
    o.refuse("timeSliceTarget", timeslices)?;
    o.refuse("timeSliceWindow", timeslices)?;
    o.only_keys(&["displayName", "op", "value", "target", "targetPercent"])?;
    let (percent, key) = target(o)?;
    let threshold = if latency {
        Some(threshold(o)?)
    } else {
        let ratio_only = "op and value apply to a thresholdMetric; a ratioMetric objective has only target or targetPercent";
        o.refuse("op", ratio_only)?;
        o.refuse("value", ratio_only)?;
        None
    };
    Ok(Objective {
        percent,
        key,
        threshold,
    })
}

/// `target` (a fraction) or `targetPercent`, as a percentage.
fn target(o: &Node) -> Result<(f64, String), Fault> {
    match (o.get("target"), o.get("targetPercent")) {
        (Some(t), None) => {
            let f = t.number("0.999")?;
            if !(f > 0.0 && f < 1.0) {
                return Err(t.fault(format!(
                    "{f} is not a fraction above 0 and below 1 (e.g. 0.999)"
                )));
            }
            // 0.999 × 100 is 99.89999999999999 in binary; round to what a person wrote.
            Ok(((f * 100.0 * 1e9).round() / 1e9, t.path))
        }
        (None, Some(p)) => Ok((p.number("99.9")?, p.path)),
        (Some(_), Some(p)) => Err(p.fault("give target or targetPercent, not both")),
        (None, None) => Err(o.fault("requires target (e.g. 0.999) or targetPercent (e.g. 99.9)")),
    }
}

/// `op` and `value` of a thresholdMetric objective: the slowest good duration.
fn threshold(o: &Node) -> Result<Duration, Fault> {
    let op = o.require(
        "op",
        " (lte: a request is good when it takes at most value seconds)",
    )?;
    match op.str()? {
        "lte" | "lt" => {}
        floor @ ("gte" | "gt") => {
            return Err(op.fault(format!(
                "{floor} cannot be mapped: a latency SLI counts requests that take at most value seconds as good; use lte"
            )))
        }
        other => return Err(op.fault(format!("unknown operator {other:?} (lte, lt, gte or gt)"))),
    }
    let value = o.require("value", " (the latency threshold in seconds, e.g. 0.3)")?;
    let secs = value.number("0.3")?;
    Duration::try_from_secs_f64(secs).map_err(|_| {
        value.fault(format!(
            "{secs} is not a number of seconds above 0 (e.g. 0.3)"
        ))
    })
}

/// `metadata.labels`: strings, lists of strings (joined with `,`), numbers and booleans.
fn labels(metadata: &Node) -> Result<Option<BTreeMap<String, String>>, Fault> {
    let Some(node) = metadata.get("labels") else {
        return Ok(None);
    };
    let mut out = BTreeMap::new();
    for (key, value) in node.map()? {
        let at = Node {
            value,
            path: node.key_path(key),
        };
        let wanted = label_name(key);
        if wanted != *key {
            return Err(at.fault(format!(
                "{key:?} is not a valid Prometheus label name (write it {wanted:?})"
            )));
        }
        let text = match value {
            Value::Array(items) => items
                .iter()
                .map(|v| scalar(v).ok_or_else(|| at.fault("list items must be strings")))
                .collect::<Result<Vec<_>, _>>()?
                .join(","),
            v => scalar(v).ok_or_else(|| at.fault("must be a string or a list of strings"))?,
        };
        out.insert(key.clone(), text);
    }
    Ok(Some(out))
}

fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Turns a validation error about the mapped SLO `{file}[i](name).key` into one about the
/// OpenSLO document and key it came from.
fn translate(e: ConfigError, mapped: &[Mapped], file: &str) -> OpenSloError {
    let located = match &e {
        ConfigError::Invalid { path, reason } => {
            native_key(path, file).and_then(|(i, key)| mapped.get(i).map(|m| (m, key, reason)))
        }
        _ => None,
    };
    match located {
        Some((m, key, reason)) => OpenSloError::Document {
            file: file.to_string(),
            document: m.document,
            name: Some(m.name.clone()),
            key: m.openslo_key(key),
            reason: reason.clone(),
        },
        None => OpenSloError::Config {
            file: file.to_string(),
            source: e,
        },
    }
}

/// Splits `{file}[i].key` or `{file}[i](name).key` into `i` and `key`.
fn native_key<'p>(path: &'p str, file: &str) -> Option<(usize, &'p str)> {
    let rest = path.strip_prefix(file)?.strip_prefix('[')?;
    let (index, rest) = rest.split_once(']')?;
    let index = index.parse().ok()?;
    let key = match rest.strip_prefix('.') {
        Some(key) => key,
        None => rest.split_once(").")?.1,
    };
    Some((index, key))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::slo::def::SliKind;

    /// An availability SLO with an inline ratioMetric SLI.
    const RATIO: &str = r#"
apiVersion: openslo/v1
kind: SLO
metadata:
  name: orders-availability
  displayName: Orders succeed
  labels:
    team: payments
    tier: ["tier-1", "critical"]
    user_impacting: true
spec:
  description: Orders are accepted.
  service: orders
  indicator:
    metadata:
      name: orders-good
    spec:
      ratioMetric:
        counter: true
        good:
          metricSource:
            type: otel-sli
            spec:
              feature: "POST /orders"
        total:
          metricSource:
            type: OTEL-SLI
            spec:
              feature: "POST /orders"
              service: orders
  timeWindow:
    - duration: 4w
      isRolling: true
  budgetingMethod: Occurrences
  objectives:
    - displayName: Orders
      target: 0.999
"#;

    /// A latency SLO whose thresholdMetric SLI is its own document.
    const THRESHOLD: &str = r#"
apiVersion: openslo/v1
kind: Service
metadata:
  name: orders
spec:
  description: Takes orders.
---
apiVersion: openslo/v1
kind: SLO
metadata:
  name: orders-latency
spec:
  service: orders
  indicatorRef: orders-duration
  timeWindow:
    - duration: 7d
      isRolling: true
  budgetingMethod: Occurrences
  objectives:
    - op: lte
      value: 0.25
      targetPercent: 99
---
apiVersion: openslo/v1
kind: SLI
metadata:
  name: orders-duration
spec:
  thresholdMetric:
    metricSource:
      type: otelsli
      spec:
        feature: "GET /orders/*"
"#;

    fn one(text: &str) -> SloDef {
        let mut slos = parse(text, "o.yaml").expect("maps");
        assert_eq!(slos.len(), 1);
        slos.remove(0)
    }

    fn err(text: &str) -> String {
        parse(text, "o.yaml").expect_err("refused").to_string()
    }

    /// `base` with `from` replaced by `to`; the replacement must happen.
    fn edit(base: &str, from: &str, to: &str) -> String {
        assert!(base.contains(from), "{from:?} not in the base document");
        base.replacen(from, to, 1)
    }

    #[test]
    fn ratio_metric_maps_to_availability() {
        let s = one(RATIO);
        assert_eq!(s.name, "orders-availability");
        assert_eq!(s.service, "orders");
        assert_eq!(s.feature.pattern(), "POST /orders");
        assert_eq!(s.sli, SliKind::Availability);
        assert_eq!(s.window, Duration::from_secs(28 * 86_400));
        assert_eq!(s.description.as_deref(), Some("Orders are accepted."));
        let labels: Vec<_> = s
            .labels
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            labels,
            [
                ("team", "payments"),
                ("tier", "tier-1,critical"),
                ("user_impacting", "true")
            ]
        );
    }

    #[test]
    fn target_fraction_equals_the_native_percentage() {
        let native = crate::settings::parse(
            "slos:\n  - {name: a, service: s, feature: f, objective: 99.9}\n",
            |_| None,
        )
        .expect("native");
        assert_eq!(one(RATIO).objective, native.slos[0].objective);
    }

    #[test]
    fn bad_over_total_maps_like_good_over_total() {
        let s = one(&edit(RATIO, "        good:", "        bad:"));
        assert_eq!(s.sli, SliKind::Availability);
        assert_eq!(s.feature.pattern(), "POST /orders");
    }

    #[test]
    fn threshold_metric_through_indicator_ref_maps_to_latency() {
        let s = one(THRESHOLD);
        assert_eq!(s.name, "orders-latency");
        assert_eq!(
            s.sli,
            SliKind::Latency {
                threshold: Duration::from_millis(250)
            }
        );
        assert!(s.feature.is_glob() && s.feature.matches("GET /orders/42"));
        assert!((s.objective - 0.99).abs() < 1e-12);
        assert_eq!(s.window, Duration::from_secs(7 * 86_400));
        assert!(s.labels.is_empty() && s.description.is_none());
        // `lt` is read as `lte`: durations are nanoseconds, the difference is one of them.
        let lt = one(&edit(THRESHOLD, "op: lte", "op: lt"));
        assert_eq!(lt.sli, s.sli);
    }

    #[test]
    fn many_documents_map_in_file_order() {
        let second = edit(RATIO, "name: orders-availability", "name: orders-other");
        let text = format!("{THRESHOLD}\n---\n{RATIO}\n---\n{second}\n---\n");
        let names: Vec<String> = parse(&text, "o.yaml")
            .expect("maps")
            .into_iter()
            .map(|s| s.name)
            .collect();
        assert_eq!(
            names,
            ["orders-latency", "orders-availability", "orders-other"]
        );
    }

    #[test]
    fn durations_in_shorthand() {
        assert_eq!(shorthand("90m"), Ok(Duration::from_secs(5400)));
        assert_eq!(shorthand("12h"), Ok(Duration::from_secs(12 * 3600)));
        assert_eq!(shorthand("30d"), Ok(Duration::from_secs(30 * 86_400)));
        assert_eq!(shorthand("2w"), Ok(Duration::from_secs(14 * 86_400)));
        for bad in [
            "",
            "d",
            "30",
            "0d",
            "1.5d",
            "-1d",
            "30s",
            "30 d",
            "99999999999999999999d",
        ] {
            let e = shorthand(bad).expect_err(bad);
            assert!(e.contains("is not a duration"), "{bad:?}: {e}");
        }
        for calendar in ["1M", "1Q", "1Y"] {
            let e = shorthand(calendar).expect_err(calendar);
            assert!(e.contains("no fixed length"), "{e}");
        }
    }

    /// Each refusal: the edit to a valid file, the key named and a piece of the reason.
    #[test]
    fn refusals_name_the_document_key_and_reason() {
        let cases: &[(&str, &str, &str, &str, &str)] = &[
            (RATIO, "openslo/v1", "openslo/v1alpha", "apiVersion", "reads openslo/v1"),
            (RATIO, "kind: SLO", "kind: AlertPolicy", "kind", "slo.alerts"),
            (RATIO, "kind: SLO", "kind: AlertCondition", "kind", "slo.alerts"),
            (RATIO, "kind: SLO", "kind: AlertNotificationTarget", "kind", "slo.alerts"),
            (RATIO, "kind: SLO", "kind: DataSource", "kind", "need no DataSource"),
            (RATIO, "kind: SLO", "kind: Dashboard", "kind", "unknown kind"),
            (RATIO, "kind: SLO", "kinds: SLO", "kinds", "unknown key"),
            (RATIO, "  name: orders-availability", "  nam: x", "metadata.nam", "unknown key"),
            (RATIO, "  service: orders\n", "", "spec.service", "required"),
            (RATIO, "  description:", "  descripton:", "spec.descripton", "unknown key"),
            (RATIO, "  budgetingMethod: Occurrences", "  budgetingMethod: Timeslices",
                "spec.budgetingMethod", "Timeslices is not supported; use Occurrences"),
            (RATIO, "  budgetingMethod: Occurrences", "  budgetingMethod: RatioTimeslices",
                "spec.budgetingMethod", "RatioTimeslices is not supported"),
            (RATIO, "  budgetingMethod: Occurrences", "  budgetingMethod: Events",
                "spec.budgetingMethod", "unknown budgeting method"),
            (RATIO, "  budgetingMethod: Occurrences\n", "", "spec.budgetingMethod", "required"),
            (RATIO, "      isRolling: true", "      isRolling: false",
                "spec.timeWindow[0].isRolling", "calendar-aligned windows are not supported"),
            (RATIO, "      isRolling: true",
                "      calendar: {startTime: \"2024-01-01 00:00:00\", timeZone: UTC}",
                "spec.timeWindow[0].calendar", "otel-sli windows are rolling"),
            (RATIO, "      isRolling: true\n", "", "spec.timeWindow[0].isRolling", "required"),
            (RATIO, "duration: 4w", "duration: 1M", "spec.timeWindow[0].duration",
                "no fixed length"),
            (RATIO, "duration: 4w", "duration: 30s", "spec.timeWindow[0].duration",
                "is not a duration"),
            (RATIO, "duration: 4w", "duration: 30m", "spec.timeWindow[0].duration",
                "between 1h and 90d"),
            (RATIO, "duration: 4w", "duration: 13w", "spec.timeWindow[0].duration",
                "between 1h and 90d"),
            (RATIO, "  timeWindow:\n    - duration: 4w\n      isRolling: true\n", "",
                "spec.timeWindow", "rolling window"),
            (RATIO, "      isRolling: true", "      isRolling: true\n    - duration: 1d\n      isRolling: true",
                "spec.timeWindow", "exactly one window"),
            (RATIO, "      target: 0.999", "      target: 0.999\n    - target: 0.99",
                "spec.objectives", "exactly one objective"),
            (RATIO, "      target: 0.999", "      target: 1", "spec.objectives[0].target",
                "not a fraction above 0 and below 1"),
            (RATIO, "      target: 0.999", "      target: high", "spec.objectives[0].target",
                "must be a number"),
            (RATIO, "      target: 0.999", "      targetPercent: 100",
                "spec.objectives[0].targetPercent", "not a percentage above 0 and below 100"),
            (RATIO, "      target: 0.999", "      target: 0.999\n      targetPercent: 99.9",
                "spec.objectives[0].targetPercent", "not both"),
            (RATIO, "    - displayName: Orders\n      target: 0.999", "    - displayName: Orders",
                "spec.objectives[0]", "requires target"),
            (RATIO, "      target: 0.999", "      target: 0.999\n      op: lte\n      value: 1",
                "spec.objectives[0].op", "apply to a thresholdMetric"),
            (RATIO, "      target: 0.999", "      target: 0.999\n      timeSliceTarget: 0.9",
                "spec.objectives[0].timeSliceTarget", "Timeslices"),
            (RATIO, "      target: 0.999", "      target: 0.999\n      timeSliceWindow: 5m",
                "spec.objectives[0].timeSliceWindow", "Timeslices"),
            (RATIO, "        counter: true", "        counter: false",
                "spec.indicator.spec.ratioMetric.counter", "must be true or absent"),
            (RATIO, "        good:", "        raw:", "spec.indicator.spec.ratioMetric.raw",
                "precomputed ratios"),
            (RATIO, "        counter: true", "        rawType: success",
                "spec.indicator.spec.ratioMetric.rawType", "precomputed ratios"),
            (RATIO, "        counter: true\n        good:\n          metricSource:\n            type: otel-sli\n            spec:\n              feature: \"POST /orders\"\n",
                "        counter: true\n", "spec.indicator.spec.ratioMetric", "requires good or bad"),
            (RATIO, "        counter: true", "        counter: true\n        bad: {metricSource: {type: otel-sli, spec: {feature: x}}}",
                "spec.indicator.spec.ratioMetric.bad", "not both"),
            (RATIO, "              feature: \"POST /orders\"\n        total:",
                "              feature: \"POST /order\"\n        total:",
                "spec.indicator.spec.ratioMetric.good.metricSource.spec.feature",
                "differs from the feature of total"),
            (RATIO, "            type: otel-sli", "            type: Prometheus",
                "spec.indicator.spec.ratioMetric.good.metricSource.type", "use type: otel-sli"),
            (RATIO, "            type: otel-sli", "            metricSourceRef: prom",
                "spec.indicator.spec.ratioMetric.good.metricSource.metricSourceRef",
                "DataSource references are not supported"),
            (RATIO, "              feature: \"POST /orders\"\n        total:",
                "              query: up\n        total:",
                "spec.indicator.spec.ratioMetric.good.metricSource.spec.query", "unknown key"),
            (RATIO, "              service: orders", "              service: billing",
                "spec.indicator.spec.ratioMetric.total.metricSource.spec.service",
                "differs from the SLO's spec.service"),
            (RATIO, "              feature: \"POST /orders\"\n              service",
                "              feature: \"\"\n              service",
                "spec.indicator.spec.ratioMetric.total.metricSource.spec.feature", "must not be empty"),
            (RATIO, "    metadata:\n      name: orders-good\n", "    kind: SLI\n",
                "spec.indicator.kind", "unknown key"),
            (RATIO, "      ratioMetric:", "      thresholdMetric: {metricSource: {type: otel-sli, spec: {feature: x}}}\n      ratioMetric:",
                "spec.indicator.spec.thresholdMetric", "not both"),
            (RATIO, "  indicator:", "  indicatorRef: x\n  indicator:", "spec.indicatorRef", "not both"),
            (RATIO, "  name: orders-availability", "  name: orders/availability", "metadata.name",
                "letters, digits"),
            (RATIO, "    team: payments", "    cost-centre: c1", "metadata.labels.cost-centre",
                "write it \"cost_centre\""),
            (RATIO, "    team: payments", "    slo: x", "metadata.labels.slo", "reserved label name"),
            (RATIO, "    team: payments", "    team: {a: b}", "metadata.labels.team",
                "string or a list of strings"),
            (RATIO, "  budgetingMethod:", "  alertPolicies: [{alertPolicyRef: p}]\n  budgetingMethod:",
                "spec.alertPolicies", "slo.alerts"),
            (THRESHOLD, "op: lte", "op: gte", "spec.objectives[0].op", "gte cannot be mapped"),
            (THRESHOLD, "op: lte", "op: gt", "spec.objectives[0].op", "gt cannot be mapped"),
            (THRESHOLD, "op: lte", "op: eq", "spec.objectives[0].op", "unknown operator"),
            (THRESHOLD, "    - op: lte\n      value", "    - value", "spec.objectives[0].op",
                "required"),
            (THRESHOLD, "value: 0.25", "value: 300ms", "spec.objectives[0].value",
                "must be a number"),
            (THRESHOLD, "value: 0.25", "value: -1", "spec.objectives[0].value",
                "not a number of seconds above 0"),
            (THRESHOLD, "value: 0.25", "value: 0", "spec.objectives[0].value",
                "above 0 and at most 1h"),
            (THRESHOLD, "value: 0.25", "value: 7200", "spec.objectives[0].value",
                "above 0 and at most 1h"),
            (THRESHOLD, "indicatorRef: orders-duration", "indicatorRef: nope",
                "spec.indicatorRef", "no kind: SLI document named \"nope\""),
        ];
        for (base, from, to, key, reason) in cases {
            let text = edit(base, from, to);
            let msg = err(&text);
            assert!(msg.starts_with("o.yaml: document "), "{to:?}: {msg}");
            assert!(
                msg.contains(&format!(": {key}: ")),
                "{to:?}: wanted key {key}: {msg}"
            );
            assert!(msg.contains(reason), "{to:?}: wanted {reason:?}: {msg}");
        }
    }

    #[test]
    fn errors_name_the_document_by_position_and_name() {
        let text = format!(
            "{THRESHOLD}---\n{}",
            edit(RATIO, "Occurrences", "Timeslices")
        );
        assert_eq!(
            err(&text),
            "o.yaml: document 4 (orders-availability): spec.budgetingMethod: Timeslices is \
             not supported; use Occurrences (otel-sli counts good and bad requests over the \
             window, not time slices)"
        );
        let unnamed = edit(RATIO, "  name: orders-availability\n", "");
        assert_eq!(err(&unnamed), "o.yaml: document 1: metadata.name: required");
    }

    #[test]
    fn a_broken_referenced_sli_is_reported_in_its_own_document() {
        let text = edit(THRESHOLD, "type: otelsli", "type: Datadog");
        let msg = err(&text);
        assert!(
            msg.starts_with(
                "o.yaml: document 3 (orders-duration): spec.thresholdMetric.metricSource.type:"
            ),
            "{msg}"
        );
        assert!(
            msg.ends_with("(SLI referenced by SLO \"orders-latency\" in document 2)"),
            "{msg}"
        );
    }

    #[test]
    fn names_must_be_unique() {
        let text = format!("{RATIO}---\n{RATIO}");
        let msg = err(&text);
        assert!(
            msg.contains("document 2 (orders-availability): metadata.name"),
            "{msg}"
        );
        assert!(msg.contains("used twice"), "{msg}");
        let sli = "apiVersion: openslo/v1\nkind: SLI\nmetadata: {name: orders-duration}\n";
        let msg = err(&format!("{THRESHOLD}---\n{sli}"));
        assert!(
            msg.contains("document 4 (orders-duration): metadata.name: SLI name"),
            "{msg}"
        );
        assert!(msg.contains("already used by document 3"), "{msg}");
    }

    #[test]
    fn files_without_slos_and_broken_yaml_are_refused() {
        let service = "apiVersion: openslo/v1\nkind: Service\nmetadata: {name: s}\n";
        assert!(err(service).contains("no kind: SLO document"));
        assert!(err("").contains("no kind: SLO document"));
        let msg = err(&format!("{service}---\nkind: [\n"));
        assert!(msg.starts_with("o.yaml: document 2: "), "{msg}");
        let msg = err("- a\n- b\n");
        assert_eq!(msg, "o.yaml: document 1: (document): must be a mapping");
    }

    #[test]
    fn load_reads_the_file() {
        let e = load(Path::new("/nonexistent/openslo.yaml")).expect_err("missing");
        assert!(e
            .to_string()
            .starts_with("cannot read /nonexistent/openslo.yaml"));
    }

    #[test]
    fn native_keys_are_found_in_validation_paths() {
        assert_eq!(native_key("f.yaml[2].name", "f.yaml"), Some((2, "name")));
        assert_eq!(
            native_key("f.yaml[0](a.b-c).labels.x", "f.yaml"),
            Some((0, "labels.x"))
        );
        assert_eq!(native_key("other[0].name", "f.yaml"), None);
    }
}
