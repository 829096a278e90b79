//! `${VAR}` substitution in string values, before the typed parse.

use super::error::ConfigError;

/// Replaces `${NAME}` in every string of `value`; a missing variable is an error naming
/// the variable and the key path. `$${` escapes a literal `${`.
///
/// Returns the key paths whose values came (in part) from the environment, so that an
/// error about such a value can name the key without showing the value.
pub(super) fn substitute(
    value: &mut toml::Value,
    path: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<String>, ConfigError> {
    let mut substituted = Vec::new();
    walk(value, path, lookup, &mut substituted)?;
    Ok(substituted)
}

fn walk(
    value: &mut toml::Value,
    path: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    substituted: &mut Vec<String>,
) -> Result<(), ConfigError> {
    match value {
        toml::Value::String(s) => {
            let expanded = expand(s, path, lookup)?;
            if expanded != *s {
                substituted.push(path.to_owned());
            }
            *s = expanded;
        }
        toml::Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                walk(item, &format!("{path}[{i}]"), lookup, substituted)?;
            }
        }
        toml::Value::Table(table) => {
            for (k, v) in table.iter_mut() {
                let p = if path.is_empty() { k.clone() } else { format!("{path}.{k}") };
                walk(v, &p, lookup, substituted)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// A type error about a value that came from the environment, without the value: serde's
/// message quotes it (`invalid type: string "…", expected u64`), and it may be a secret.
pub(super) fn hide_value(message: &str) -> String {
    match message.find("expected ") {
        Some(i) => format!("the value from the environment does not fit (not shown): {}", &message[i..]),
        None => "the value from the environment does not fit (not shown)".to_owned(),
    }
}

fn expand(s: &str, path: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<String, ConfigError> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        if let Some(after) = tail.strip_prefix("$${") {
            out.push_str("${");
            rest = after;
        } else if let Some(after) = tail.strip_prefix("${") {
            let end = after.find('}').ok_or_else(|| ConfigError::new(path, "unterminated ${ in value"))?;
            let name = &after[..end];
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(ConfigError::new(path, format!("invalid variable name {name:?}")));
            }
            let v = lookup(name)
                .ok_or_else(|| ConfigError::new(path, format!("environment variable {name} is not set")))?;
            out.push_str(&v);
            rest = &after[end + 1..];
        } else {
            out.push('$');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    Ok(out)
}
