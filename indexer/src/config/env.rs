//! `${VAR}` substitution in string values, before the typed parse.

use super::ConfigError;

/// Replaces `${NAME}` in every string of `value`; a missing variable is an error naming
/// the variable and the key path. `$${` escapes a literal `${`.
pub(super) fn substitute(
    value: &mut toml::Value,
    path: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<(), ConfigError> {
    match value {
        toml::Value::String(s) => {
            *s = expand(s, path, lookup)?;
        }
        toml::Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                substitute(item, &format!("{path}[{i}]"), lookup)?;
            }
        }
        toml::Value::Table(table) => {
            for (k, v) in table.iter_mut() {
                let p = if path.is_empty() { k.clone() } else { format!("{path}.{k}") };
                substitute(v, &p, lookup)?;
            }
        }
        _ => {}
    }
    Ok(())
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
