//! Reading Prometheus text as the services expose it at `/metrics`.

/// The sum of every sample of `metric` whose labels include `label` (e.g.
/// `kind="duplicate"`; empty: every sample) in Prometheus text `text`.
pub fn metric_sum(text: &str, metric: &str, label: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(metric) && l[metric.len()..].starts_with(['{', ' ']) && l.contains(label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_are_summed_by_label() {
        let text = "# TYPE x counter\nx{kind=\"a\",e=\"1\"} 2\nx{kind=\"a\",e=\"2\"} 3\nx{kind=\"b\"} 7\nxy{kind=\"a\"} 100\n";
        assert_eq!(metric_sum(text, "x", "kind=\"a\""), 5.0);
        assert_eq!(metric_sum(text, "x", ""), 12.0);
        assert_eq!(metric_sum(text, "x", "kind=\"c\""), 0.0);
    }
}
