//! Feature patterns: an exact feature name, or a glob (`*` any run of characters, `?` one
//! character), as SLOs name the features they cover (`GET /api/*`). Matching is linear in
//! practice and never exponential.

/// Which features a pattern covers: one exact name, or a glob (`*` any run of characters,
/// `?` one character).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FeatureMatch {
    pattern: String,
    glob: bool,
}

impl FeatureMatch {
    /// A matcher for `pattern`; it is a glob when it contains `*` or `?`.
    pub fn new(pattern: &str) -> Self {
        Self {
            pattern: pattern.to_string(),
            glob: pattern.contains(['*', '?']),
        }
    }

    /// The pattern as written.
    pub fn pattern(&self) -> &str {
        &self.pattern
    }

    /// True when the pattern has wildcards.
    pub fn is_glob(&self) -> bool {
        self.glob
    }

    /// True when `feature` is covered.
    pub fn matches(&self, feature: &str) -> bool {
        if self.glob {
            glob_match(&self.pattern, feature)
        } else {
            self.pattern == feature
        }
    }
}

/// Iterative glob matching over characters with single-star backtracking: linear in
/// practice, never exponential.
fn glob_match(pattern: &str, text: &str) -> bool {
    let pattern: Vec<char> = pattern.chars().collect();
    let text: Vec<char> = text.chars().collect();
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some('*') => {
                star = Some((p, t));
                p += 1;
            }
            Some(&c) if c == '?' || Some(&c) == text.get(t) => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    p = sp + 1;
                    t = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    pattern
        .get(p..)
        .is_none_or(|rest| rest.iter().all(|c| *c == '*'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        let m = FeatureMatch::new("GET /api/*");
        assert!(m.is_glob());
        assert!(m.matches("GET /api/users"));
        assert!(m.matches("GET /api/"));
        assert!(!m.matches("POST /api/users"));
        let q = FeatureMatch::new("v?/*/x");
        assert!(q.matches("v1/a/b/x"));
        assert!(!q.matches("v10/a/x/y"));
        assert!(FeatureMatch::new("*").matches(""));
        assert!(FeatureMatch::new("a*b*c").matches("aXXbYYc"));
        assert!(!FeatureMatch::new("a*b*c").matches("aXXbYY"));
        let exact = FeatureMatch::new("GET /");
        assert!(!exact.is_glob());
        assert!(exact.matches("GET /") && !exact.matches("GET /x"));
        // Pathological pattern stays fast.
        let p = FeatureMatch::new(&"*a".repeat(50));
        assert!(!p.matches(&"a".repeat(49)));
        // `?` is one character, as in the generated PromQL regex.
        assert!(FeatureMatch::new("GET /caf?").matches("GET /café"));
    }
}
