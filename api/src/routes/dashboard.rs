//! The operator dashboard: `GET /` (HTML) and its assets under `/assets/…`, embedded in
//! the binary. The page reads only the public endpoints (`status`, `health`,
//! `v1/epochs`, `v1/events`, `v1/stream`) with relative URLs, so it shows exactly what
//! clients see, on any replica and behind a path prefix.
//!
//! Assets are named by a hash of their content (`app.<hash>.js`) and cached as
//! immutable; the page itself is revalidated on every load, so an upgrade is picked up
//! at once.

use std::hash::{Hash, Hasher};
use std::sync::OnceLock;

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::state::AppState;

const INDEX_HTML: &str = include_str!("../../assets/index.html");
const APP_JS: &str = include_str!("../../assets/app.js");
const STYLE_CSS: &str = include_str!("../../assets/style.css");

/// What the page may load: its own assets, and requests to its own origin (the API).
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
                   img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; \
                   frame-ancestors 'none'";

/// One embedded asset under its content-addressed name.
struct Asset {
    name: String,
    body: &'static str,
    content_type: &'static str,
}

/// The page (asset references rewritten to the hashed names) and its assets.
struct Dashboard {
    index: String,
    assets: Vec<Asset>,
}

/// A short hash of `body`, stable for a given binary.
fn digest(body: &str) -> String {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    body.hash(&mut h);
    format!("{:012x}", h.finish() & 0xffff_ffff_ffff)
}

fn dashboard() -> &'static Dashboard {
    static DASHBOARD: OnceLock<Dashboard> = OnceLock::new();
    DASHBOARD.get_or_init(|| {
        let mut index = INDEX_HTML.to_owned();
        let mut assets = Vec::new();
        for (file, body, content_type) in [
            ("app.js", APP_JS, "text/javascript; charset=utf-8"),
            ("style.css", STYLE_CSS, "text/css; charset=utf-8"),
        ] {
            let (stem, ext) = file.split_once('.').unwrap_or((file, ""));
            let name = format!("{stem}.{}.{ext}", digest(body));
            index = index.replace(&format!("assets/{file}"), &format!("assets/{name}"));
            assets.push(Asset { name, body, content_type });
        }
        Dashboard { index, assets }
    })
}

/// `/` and `/assets/{name}`.
pub fn router() -> Router<AppState> {
    Router::new().route("/", get(index)).route("/assets/{name}", get(asset))
}

/// The dashboard page.
pub async fn index() -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8")),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            (header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP)),
            (header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")),
        ],
        dashboard().index.clone(),
    )
        .into_response()
}

/// An asset by its content-addressed name: immutable, so cached for a year.
pub async fn asset(Path(name): Path<String>) -> Response {
    match dashboard().assets.iter().find(|a| a.name == name) {
        Some(a) => (
            [
                (header::CONTENT_TYPE, HeaderValue::from_static(a.content_type)),
                (header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=31536000, immutable")),
                (header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")),
            ],
            a.body,
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, [(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))])
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_references_its_assets_by_their_hashed_names_only() {
        let d = dashboard();
        for a in &d.assets {
            assert!(d.index.contains(&format!("assets/{}", a.name)), "{} referenced", a.name);
        }
        assert!(!d.index.contains("assets/app.js") && !d.index.contains("assets/style.css"));
        // Relative URLs only: the page works behind a path prefix.
        assert!(!d.index.contains("\"/assets") && !APP_JS.contains("fetch(\"/"));
    }

    #[test]
    fn the_page_and_its_assets_weigh_under_200_kb() {
        let total = INDEX_HTML.len() + APP_JS.len() + STYLE_CSS.len();
        assert!(total < 200 * 1024, "{total} bytes");
    }
}
