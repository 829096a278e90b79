//! Redaction of a sink's private strings (URL, secret) from error texts, before they are
//! logged, stored or served.

/// Replaces each private string of one sink with `[redacted]` (and has no `Debug`: it
/// holds them).
#[derive(Clone)]
pub(super) struct Redactor {
    secrets: Vec<String>,
}

impl Redactor {
    /// For these private strings (empty ones are ignored).
    pub(super) fn new(mut secrets: Vec<String>) -> Self {
        secrets.retain(|s| s.len() >= 4);
        // Longest first, so that a URL goes before its prefix.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        Self { secrets }
    }

    /// `text` without any private string.
    pub(super) fn redact(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for s in &self.secrets {
            out = out.replace(s.as_str(), "[redacted]");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_strings_are_replaced() {
        let r = Redactor::new(vec![
            "http://hooks.example/abc?token=s3cret".into(),
            "http://hooks.example/abc".into(),
        ]);
        assert_eq!(
            r.redact("error sending to http://hooks.example/abc?token=s3cret and http://hooks.example/abc"),
            "error sending to [redacted] and [redacted]"
        );
    }
}
