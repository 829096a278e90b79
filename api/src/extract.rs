//! [`Query`]: a query-string extractor whose rejections are JSON [`ApiError`]s naming the
//! parameter (axum's own `Query` answers in plain text).
//!
//! Empty values (`?limit=`) count as absent; unknown and repeated parameters are
//! rejected, so that a typo never silently widens a filter.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;
use url::form_urlencoded;

use crate::error::ApiError;

/// Parameters a [`Query`] may carry.
pub trait QueryParams: DeserializeOwned {
    /// The accepted parameter names, as they appear in the URL.
    const FIELDS: &'static [&'static str];
}

/// Query-string parameters of type `T`; rejects bad input with a 400 naming the field.
#[derive(Debug, Clone, Default)]
pub struct Query<T>(pub T);

impl<T: QueryParams> Query<T> {
    /// Parses a raw query string (without the `?`).
    pub fn parse(raw: &str) -> Result<Self, ApiError> {
        let mut pairs: Vec<(String, String)> = Vec::new();
        for (key, value) in form_urlencoded::parse(raw.as_bytes()) {
            if !T::FIELDS.contains(&key.as_ref()) {
                return Err(ApiError::invalid(key.chars().take(64).collect::<String>(), "unknown parameter"));
            }
            if pairs.iter().any(|(k, _)| *k == key) {
                return Err(ApiError::invalid(key, "given more than once"));
            }
            if !value.is_empty() {
                pairs.push((key.into_owned(), value.into_owned()));
            }
        }
        let encoded = form_urlencoded::Serializer::new(String::new()).extend_pairs(&pairs).finish();
        let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(encoded.as_bytes()));
        serde_path_to_error::deserialize(de).map(Query).map_err(|e| {
            let field = e.path().to_string();
            ApiError::invalid(field, format!("invalid value: {}", e.inner()))
        })
    }
}

impl<T: QueryParams, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Self::parse(parts.uri.query().unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(rename_all = "camelCase")]
    struct P {
        limit: Option<u32>,
        chain_id: Option<u64>,
        name: Option<String>,
    }

    impl QueryParams for P {
        const FIELDS: &'static [&'static str] = &["limit", "chainId", "name"];
    }

    fn field(r: Result<Query<P>, ApiError>) -> String {
        match r {
            Err(ApiError::InvalidParameter { field, .. }) => field,
            other => panic!("expected a 400, got {other:?}"),
        }
    }

    #[test]
    fn parses_and_names_the_bad_field() {
        let Ok(Query(p)) = Query::<P>::parse("limit=5&chainId=1&name=a%20b") else { panic!("valid") };
        assert_eq!(p, P { limit: Some(5), chain_id: Some(1), name: Some("a b".into()) });
        assert_eq!(field(Query::<P>::parse("limit=x")), "limit");
        assert_eq!(field(Query::<P>::parse("chainId=-1")), "chainId");
        assert_eq!(field(Query::<P>::parse("chainId=99999999999999999999")), "chainId");
        assert_eq!(field(Query::<P>::parse("chainid=1")), "chainid");
        assert_eq!(field(Query::<P>::parse("limit=1&limit=2")), "limit");
        let Ok(Query(p)) = Query::<P>::parse("limit=&name=") else { panic!("empty is absent") };
        assert_eq!(p, P { limit: None, chain_id: None, name: None });
        assert!(Query::<P>::parse("%ff%fe=1").is_err());
        assert!(Query::<P>::parse("").is_ok());
    }
}
