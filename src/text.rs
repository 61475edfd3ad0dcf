//! Wording for the messages people read (API reasons, gap details, partial-success
//! messages): a count with its noun, and the verb that agrees with it, in the right number.
//! It owns no message; each module writes its own with these.

/// `n` and its noun: `counted(1, "span", "spans")` is `"1 span"`, `counted(0, …)` `"0 spans"`.
pub fn counted(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", agree(n, one, many))
}

/// `one` when `n` is 1, `many` otherwise: the verb (or noun) that goes with a count.
pub fn agree<'a>(n: u64, one: &'a str, many: &'a str) -> &'a str {
    if n == 1 {
        one
    } else {
        many
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_is_singular_and_every_other_count_plural() {
        assert_eq!(counted(1, "request", "requests"), "1 request");
        assert_eq!(counted(0, "request", "requests"), "0 requests");
        assert_eq!(counted(2, "request", "requests"), "2 requests");
        assert_eq!(counted(11, "trace", "traces"), "11 traces");
        assert_eq!(agree(1, "has", "have"), "has");
        assert_eq!(agree(21, "has", "have"), "have");
    }
}
