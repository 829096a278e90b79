//! libpq's TLS parameters in a connection string: read here, removed before the rest goes
//! to `tokio_postgres::Config` (which rejects unknown options and knows only `disable`,
//! `prefer` and `require`).

use std::borrow::Cow;
use std::path::PathBuf;
use std::str::FromStr;

use super::settings::{RootCert, SslMode, TlsError};

/// A connection string split into what `tokio-postgres` reads and the TLS settings.
#[derive(Debug)]
pub(super) struct Parsed {
    pub(super) config: tokio_postgres::Config,
    pub(super) mode: SslMode,
    pub(super) root: RootCert,
}

/// Parameters of libpq that this crate does not support, with what to do instead.
const UNSUPPORTED: &[(&str, &str)] = &[
    ("sslcert", "client certificates are not supported; use password authentication over TLS"),
    ("sslkey", "client certificates are not supported; use password authentication over TLS"),
    ("sslpassword", "client certificates are not supported; use password authentication over TLS"),
    ("sslcertmode", "client certificates are not supported; use password authentication over TLS"),
    ("sslcrl", "certificate revocation lists are not supported"),
    ("sslcrldir", "certificate revocation lists are not supported"),
    ("ssl_min_protocol_version", "TLS 1.2 and 1.3 are always offered"),
    ("ssl_max_protocol_version", "TLS 1.2 and 1.3 are always offered"),
];

/// libpq parameters accepted and ignored: SNI is always sent for host names, TLS
/// compression no longer exists.
const IGNORED: &[&str] = &["sslsni", "sslcompression"];

/// Splits `url` (`postgres://`, `postgresql://` or keyword/value) into the
/// `tokio-postgres` configuration and the TLS settings.
pub(super) fn parse(url: &str) -> Result<Parsed, TlsError> {
    let trimmed = url.trim();
    let is_url = trimmed.starts_with("postgres://") || trimmed.starts_with("postgresql://");
    let pairs = if is_url { url_params(trimmed)? } else { keyword_pairs(trimmed)? };
    let mut mode = None;
    let mut root = RootCert::Default;
    let mut kept = Vec::new();
    for (key, value) in pairs.params {
        match key.as_str() {
            "sslmode" => mode = Some(value.parse::<SslMode>()?),
            "sslrootcert" if value == "system" => root = RootCert::System,
            "sslrootcert" => root = RootCert::File(PathBuf::from(value)),
            k if IGNORED.contains(&k) => {}
            k => match UNSUPPORTED.iter().find(|(name, _)| *name == k) {
                Some((name, hint)) => {
                    return Err(TlsError::Unsupported { parameter: (*name).to_owned(), hint });
                }
                None => kept.push((key, value)),
            },
        }
    }
    // libpq: `sslrootcert=system` defaults to verify-full and refuses weaker modes, so a
    // public CA cannot vouch for a server that merely holds some public certificate.
    let mode = match (mode, &root) {
        (None, RootCert::System) => SslMode::VerifyFull,
        (Some(m), RootCert::System) if m != SslMode::VerifyFull => {
            return Err(TlsError::InvalidUrl(format!(
                "sslrootcert=system requires sslmode=verify-full, not sslmode={m}"
            )));
        }
        (m, _) => m.unwrap_or_default(),
    };
    let rest = if is_url { rebuild_url(&pairs.base, &kept) } else { rebuild_keywords(&kept) };
    let mut config = tokio_postgres::Config::from_str(&rest)
        .map_err(|e| TlsError::InvalidUrl(crate::error::describe(&e)))?;
    config.ssl_mode(match mode {
        SslMode::Disable => tokio_postgres::config::SslMode::Disable,
        SslMode::Allow | SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
        SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => {
            tokio_postgres::config::SslMode::Require
        }
    });
    Ok(Parsed { config, mode, root })
}

struct Pairs {
    /// The URL before `?` (empty for keyword/value strings).
    base: String,
    params: Vec<(String, String)>,
}

fn url_params(url: &str) -> Result<Pairs, TlsError> {
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let mut params = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8()
                .map(Cow::into_owned)
                .map_err(|_| TlsError::InvalidUrl("a query parameter is not valid UTF-8 once decoded".into()))
        };
        params.push((decode(key)?, decode(value)?));
    }
    Ok(Pairs { base: base.to_owned(), params })
}

fn rebuild_url(base: &str, kept: &[(String, String)]) -> String {
    const COMPONENT: &percent_encoding::AsciiSet =
        &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');
    let mut out = base.to_owned();
    for (i, (key, value)) in kept.iter().enumerate() {
        out.push(if i == 0 { '?' } else { '&' });
        out.extend(percent_encoding::utf8_percent_encode(key, COMPONENT));
        out.push('=');
        out.extend(percent_encoding::utf8_percent_encode(value, COMPONENT));
    }
    out
}

/// libpq's keyword/value form: `key=value` separated by spaces, values optionally in
/// single quotes with `\'` and `\\` escapes.
fn keyword_pairs(s: &str) -> Result<Pairs, TlsError> {
    let mut params = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.peek().is_none() {
            break;
        }
        let mut key = String::new();
        while let Some(c) = chars.next_if(|c| *c != '=' && !c.is_whitespace()) {
            key.push(c);
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.next() != Some('=') {
            return Err(TlsError::InvalidUrl(format!("expected `=` after `{key}`")));
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        if chars.next_if_eq(&'\'').is_some() {
            loop {
                match chars.next() {
                    Some('\'') => break,
                    Some('\\') => value.extend(chars.next()),
                    Some(c) => value.push(c),
                    None => {
                        return Err(TlsError::InvalidUrl(format!("unterminated quoted value of `{key}`")));
                    }
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                if c == '\\' {
                    value.extend(chars.next());
                } else {
                    value.push(c);
                }
            }
        }
        params.push((key, value));
    }
    Ok(Pairs { base: String::new(), params })
}

fn rebuild_keywords(kept: &[(String, String)]) -> String {
    let quote = |v: &str| v.replace('\\', "\\\\").replace('\'', "\\'");
    kept.iter().map(|(k, v)| format!("{k}='{}'", quote(v))).collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::parse;
    use crate::tls::TlsError;
    use crate::tls::{RootCert, SslMode};

    #[test]
    fn the_tls_parameters_are_read_and_removed() {
        let p = parse("postgres://u:s3cret@db.example.com:6543/app?sslmode=verify-full&sslrootcert=%2Ftmp%2Fca.pem&application_name=x")
            .expect("parses");
        assert_eq!(p.mode, SslMode::VerifyFull);
        assert_eq!(p.root, RootCert::File(PathBuf::from("/tmp/ca.pem")));
        assert_eq!(p.config.get_application_name(), Some("x"));
        assert_eq!(p.config.get_dbname(), Some("app"));
        assert_eq!(p.config.get_ssl_mode(), tokio_postgres::config::SslMode::Require);
        let p = parse("postgresql://u@h/db").expect("parses");
        assert_eq!((p.mode, p.root), (SslMode::Prefer, RootCert::Default));
        assert_eq!(p.config.get_ssl_mode(), tokio_postgres::config::SslMode::Prefer);
        let p = parse("postgres://u@h/db?sslmode=disable").expect("parses");
        assert_eq!(p.config.get_ssl_mode(), tokio_postgres::config::SslMode::Disable);
        let p = parse("postgres://u@h/db?sslmode=allow&sslsni=1").expect("parses");
        assert_eq!(
            (p.mode, p.config.get_ssl_mode()),
            (SslMode::Allow, tokio_postgres::config::SslMode::Prefer)
        );
    }

    #[test]
    fn keyword_value_strings_work_too() {
        let p =
            parse("host=localhost user=postgres password='a b\\'c' sslmode=verify-ca sslrootcert=/x/ca.pem")
                .expect("parses");
        assert_eq!(p.mode, SslMode::VerifyCa);
        assert_eq!(p.root, RootCert::File(PathBuf::from("/x/ca.pem")));
        assert_eq!(p.config.get_password(), Some(&b"a b'c"[..]));
        assert_eq!(p.config.get_user(), Some("postgres"));
    }

    #[test]
    fn system_roots_mean_verify_full() {
        let p = parse("postgres://h/db?sslrootcert=system").expect("parses");
        assert_eq!((p.mode, p.root), (SslMode::VerifyFull, RootCert::System));
        let err = parse("postgres://h/db?sslrootcert=system&sslmode=require").expect_err("weaker mode");
        assert!(err.to_string().contains("verify-full"), "{err}");
    }

    #[test]
    fn bad_or_unsupported_parameters_are_named_and_the_url_is_not_echoed() {
        for (url, needle) in [
            ("postgres://u:hunter2@h/db?sslmode=verify", "sslmode"),
            ("postgres://u:hunter2@h/db?sslcert=/c.pem", "sslcert"),
            ("postgres://u:hunter2@h/db?nonsense=1", "nonsense"),
            ("host=h password=hunter2 sslkey=/k.pem", "sslkey"),
        ] {
            let err = parse(url).expect_err(url);
            let text = err.to_string();
            assert!(text.contains(needle), "{text}");
            assert!(!text.contains("hunter2"), "{text}");
        }
        assert!(matches!(parse("postgres://h/db?sslcert=x"), Err(TlsError::Unsupported { .. })));
    }
}
