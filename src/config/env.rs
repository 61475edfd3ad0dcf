//! `${VAR}` expansion in configuration text, done before YAML parsing.
//!
//! Forms: `${VAR}`, `${env:VAR}` (the OpenTelemetry Collector's spelling), `${VAR:-default}`,
//! and `$$` for a literal `$`. A variable that is unset and has no default is an error naming
//! the variable and the line, never a silent empty string.

use thiserror::Error;

/// A `${…}` reference that could not be expanded.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ExpandError {
    /// The variable is not set and no `:-default` was given.
    #[error("line {line}: environment variable {name} is not set (write ${{{name}:-default}} to give a default)")]
    Unset { name: String, line: usize },
    /// `${` without a closing `}`.
    #[error("line {line}: unterminated ${{ in configuration")]
    Unterminated { line: usize },
    /// The name inside `${}` is empty or has characters other than letters, digits and `_`.
    #[error("line {line}: invalid variable name {name:?}")]
    BadName { name: String, line: usize },
}

/// Expands variables in `text`, looking them up with `lookup`.
pub fn expand(text: &str, lookup: impl Fn(&str) -> Option<String>) -> Result<String, ExpandError> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    let mut line = 1;
    while let Some(pos) = rest.find('$') {
        let (before, after) = rest.split_at(pos);
        line += before.matches('\n').count();
        out.push_str(before);
        if let Some(stripped) = after.strip_prefix("$$") {
            out.push('$');
            rest = stripped;
        } else if let Some(body) = after.strip_prefix("${") {
            let end = body.find('}').ok_or(ExpandError::Unterminated { line })?;
            let inner = &body[..end];
            let inner = inner.strip_prefix("env:").unwrap_or(inner);
            let (name, default) = match inner.split_once(":-") {
                Some((n, d)) => (n, Some(d)),
                None => (inner, None),
            };
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(ExpandError::BadName {
                    name: name.to_string(),
                    line,
                });
            }
            match (lookup(name), default) {
                (Some(v), _) => out.push_str(&v),
                (None, Some(d)) => out.push_str(d),
                (None, None) => {
                    return Err(ExpandError::Unset {
                        name: name.to_string(),
                        line,
                    })
                }
            }
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = &after[1..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "POD_IP" => Some("10.0.0.7".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn expands_all_forms() {
        assert_eq!(
            expand("a: ${POD_IP}:4317", env).as_deref(),
            Ok("a: 10.0.0.7:4317")
        );
        assert_eq!(expand("${env:POD_IP}", env).as_deref(), Ok("10.0.0.7"));
        assert_eq!(expand("${NOPE:-x}", env).as_deref(), Ok("x"));
        assert_eq!(expand("${EMPTY:-x}", env).as_deref(), Ok(""));
        assert_eq!(expand("cost: $$5 $x", env).as_deref(), Ok("cost: $5 $x"));
    }

    #[test]
    fn unset_is_an_error_with_line() {
        assert_eq!(
            expand("a: 1\nb: ${NOPE}", env),
            Err(ExpandError::Unset {
                name: "NOPE".into(),
                line: 2
            })
        );
        assert_eq!(
            expand("${POD_IP", env),
            Err(ExpandError::Unterminated { line: 1 })
        );
        assert!(matches!(
            expand("${a b}", env),
            Err(ExpandError::BadName { .. })
        ));
    }
}
