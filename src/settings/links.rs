//! Validation of `links:`: the URL template that turns an example request's ids into a
//! link to its trace at the user's tracing tool (`links.trace_url`). Only the template is
//! checked here (an absolute `http`/`https` URL with a fixed host and known placeholders);
//! the dashboard fills it in, and only with ids it has checked are hex.

use super::invalid;
use super::raw::RawLinks;
use crate::config::ConfigError;

/// The key every error names.
const KEY: &str = "links.trace_url";

/// The placeholders a template may hold, each replaced by the id it names.
pub const PLACEHOLDERS: [&str; 2] = ["{trace_id}", "{span_id}"];

/// Validates `links:`: the trace URL template, if any.
pub fn trace_url(raw: RawLinks) -> Result<Option<String>, ConfigError> {
    raw.trace_url.map(|t| template(&t).map(|()| t)).transpose()
}

/// Checks one template; the error names `links.trace_url`.
fn template(t: &str) -> Result<(), ConfigError> {
    const EXAMPLE: &str = "for example https://tracing.example/trace/{trace_id}";
    if t.trim().is_empty() {
        return Err(invalid(
            KEY,
            "empty; remove the key to show trace ids without links",
        ));
    }
    if t.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(invalid(
            KEY,
            format!("{t:?} holds a space or control character; percent-encode it (%20)"),
        ));
    }
    let lower = t.to_ascii_lowercase();
    let Some(rest) = ["https://", "http://"]
        .iter()
        .find_map(|s| lower.starts_with(s).then(|| &t[s.len()..]))
    else {
        return Err(invalid(
            KEY,
            format!("{t:?} is not an http:// or https:// URL ({EXAMPLE})"),
        ));
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    host(t, authority)?;
    placeholders(t, tail)
}

/// The authority part: a host name or address and an optional port; no placeholder, no
/// credentials (the template is shown to every dashboard user).
fn host(t: &str, authority: &str) -> Result<(), ConfigError> {
    if authority.contains('@') {
        return Err(invalid(
            KEY,
            "must not hold credentials (user@host): every dashboard user sees the template",
        ));
    }
    if authority.contains(['{', '}']) {
        return Err(invalid(
            KEY,
            format!("{t:?}: the host cannot hold a placeholder; put the ids in the path or query"),
        ));
    }
    let (name, port) = if let Some(v6) = authority.strip_prefix('[') {
        match v6.split_once(']') {
            Some((addr, "")) if addr.parse::<std::net::Ipv6Addr>().is_ok() => (authority, None),
            Some((addr, rest)) if addr.parse::<std::net::Ipv6Addr>().is_ok() => {
                let Some(port) = rest.strip_prefix(':') else {
                    return Err(invalid(KEY, format!("{t:?}: {rest:?} is not a port")));
                };
                (&authority[..addr.len() + 2], Some(port))
            }
            _ => {
                return Err(invalid(
                    KEY,
                    format!("{t:?}: the host is not an IPv6 address"),
                ))
            }
        }
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    let plain = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_');
    if name.is_empty() || !(name.starts_with('[') || name.chars().all(plain)) {
        return Err(invalid(
            KEY,
            format!("{t:?} has no valid host name or address after the scheme"),
        ));
    }
    if let Some(p) = port {
        if p.parse::<u16>().is_err() {
            return Err(invalid(KEY, format!("{t:?}: {p:?} is not a port")));
        }
    }
    Ok(())
}

/// Every brace of the path, query and fragment belongs to a known placeholder, and at least
/// one placeholder is there.
fn placeholders(t: &str, tail: &str) -> Result<(), ConfigError> {
    let mut found = false;
    let mut rest = tail;
    while let Some(i) = rest.find(['{', '}']) {
        let at = &rest[i..];
        match PLACEHOLDERS.iter().find(|p| at.starts_with(*p)) {
            Some(p) => {
                found = true;
                rest = &at[p.len()..];
            }
            None => {
                // `{name}` when it looks like a misspelt placeholder, else the brace alone.
                let shown = match at[1..].find(['{', '}']) {
                    Some(j) if at.starts_with('{') && at[1 + j..].starts_with('}') && j <= 20 => {
                        &at[..j + 2]
                    }
                    _ => &at[..1],
                };
                let pos = t[..t.len() - at.len()].chars().count() + 1;
                return Err(invalid(
                    KEY,
                    format!(
                        "{t:?}: {shown:?} at character {pos} is not a placeholder; use {{trace_id}} or {{span_id}}, and write other braces as %7B and %7D"
                    ),
                ));
            }
        }
    }
    if found {
        Ok(())
    } else {
        Err(invalid(
            KEY,
            format!(
                "{t:?} holds neither {{trace_id}} nor {{span_id}}, so every link would open the same page"
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(t: &str) -> Result<Option<String>, String> {
        trace_url(RawLinks {
            trace_url: Some(t.to_string()),
        })
        .map_err(|e| e.to_string())
    }

    #[test]
    fn unset_is_no_link() {
        assert_eq!(trace_url(RawLinks::default()).ok(), Some(None));
    }

    #[test]
    fn accepted_templates_are_kept_as_written() {
        for t in [
            "https://tracing.example/trace/{trace_id}",
            "https://tracing.example/trace/{trace_id}?span={span_id}",
            "http://jaeger:16686/trace/{trace_id}",
            "http://jaeger:16686/trace/{trace_id}?uiFind={span_id}",
            "HTTPS://Tracing.Example/t/{trace_id}",
            "http://10.0.0.7:16686/trace/{trace_id}",
            "http://[fd00::5]:16686/trace/{trace_id}",
            "https://tracing.example/span/{span_id}",
            "https://tracing.example/#/trace/{trace_id}/{trace_id}",
            "https://grafana.example/explore?panes=%7B%22t%22:%7B%22query%22:%22{trace_id}%22%7D%7D",
        ] {
            assert_eq!(check(t), Ok(Some(t.to_string())), "{t}");
        }
    }

    /// Every `trace_url:` written in the documentation is accepted.
    #[test]
    fn the_documented_templates_are_accepted() {
        let docs = [
            include_str!("../../docs/exemplars.md"),
            include_str!("../../docs/configuration.md"),
            include_str!("../../docs/dashboard.md"),
        ];
        let mut seen = 0;
        for line in docs.iter().flat_map(|d| d.lines()) {
            let Some((_, v)) = line.split_once("trace_url: \"") else {
                continue;
            };
            let t = v.split('"').next().unwrap_or("");
            assert_eq!(check(t), Ok(Some(t.to_string())), "{line}");
            seen += 1;
        }
        assert!(seen >= 3, "the docs show Jaeger, Tempo and a vendor");
    }

    #[test]
    fn refused_templates_name_the_key_and_the_reason() {
        let cases = [
            ("", "empty"),
            ("   ", "empty"),
            (
                "javascript:alert('{trace_id}')",
                "not an http:// or https:// URL",
            ),
            (
                "ftp://tracing.example/{trace_id}",
                "not an http:// or https:// URL",
            ),
            ("/trace/{trace_id}", "not an http:// or https:// URL"),
            (
                "tracing.example/trace/{trace_id}",
                "not an http:// or https:// URL",
            ),
            ("https://", "has no valid host"),
            ("https:///trace/{trace_id}", "has no valid host"),
            ("https://:443/trace/{trace_id}", "has no valid host"),
            ("https://trac<ing/{trace_id}", "has no valid host"),
            ("https://tracing.example:http/{trace_id}", "is not a port"),
            ("https://[nope]/{trace_id}", "not an IPv6 address"),
            ("http://[fd00::5]16686/{trace_id}", "is not a port"),
            ("https://{trace_id}.example/", "cannot hold a placeholder"),
            (
                "https://user:secret@tracing.example/{trace_id}",
                "credentials",
            ),
            (
                "https://tracing.example/trace",
                "neither {trace_id} nor {span_id}",
            ),
            (
                "https://tracing.example/trace/{traceid}",
                "\"{traceid}\" at character 31 is not a placeholder",
            ),
            (
                "https://tracing.example/?q={\"id\":\"{trace_id}\"}",
                "\"{\" at character 28 is not a placeholder",
            ),
            (
                "https://tracing.example/{trace_id}}",
                "\"}\" at character 35 is not a placeholder",
            ),
            (
                "https://tracing.example/trace/ {trace_id}",
                "space or control",
            ),
        ];
        for (t, why) in cases {
            let msg = check(t).expect_err(t);
            assert!(msg.starts_with("links.trace_url: "), "{t}: {msg}");
            assert!(msg.contains(why), "{t}: {msg}");
        }
        let msg = check("https://user:secret@tracing.example/{trace_id}").unwrap_err();
        assert!(
            !msg.contains("secret"),
            "credentials are not repeated: {msg}"
        );
    }
}
