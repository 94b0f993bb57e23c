//! The live page served at `/`: plain HTML, JavaScript and CSS with no build
//! step, embedded in the binary. It uses only the public API (HTTP and
//! `/v1/ws`). See `docs/live-page.md`.

use axum::http::{header, Uri};
use axum::response::IntoResponse;

const INDEX_HTML: &str = include_str!("index.html");
const APP_JS: &str = include_str!("app.js");
const STYLE_CSS: &str = include_str!("style.css");

fn asset(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
}

/// `GET /`. Opened as `/?token=TOKEN` on a server with keys, the page loads
/// its assets with the same token (they are guarded like the page).
pub async fn index(uri: Uri) -> impl IntoResponse {
    let html = match crate::api::access::query_token(&uri) {
        Some(t) => {
            let q = format!("?token={}", crate::api::access::percent_encode(&t));
            INDEX_HTML
                .replace("\"ui/style.css\"", &format!("\"ui/style.css{q}\""))
                .replace("\"ui/app.js\"", &format!("\"ui/app.js{q}\""))
        }
        None => INDEX_HTML.to_string(),
    };
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
            // The page's URL may carry a token: never send it on.
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        html,
    )
}

/// `GET /ui/app.js`.
pub async fn app_js() -> impl IntoResponse {
    asset("text/javascript; charset=utf-8", APP_JS)
}

/// `GET /ui/style.css`.
pub async fn style_css() -> impl IntoResponse {
    asset("text/css; charset=utf-8", STYLE_CSS)
}
