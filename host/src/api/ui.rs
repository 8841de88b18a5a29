//! `GET /ui`: the operator's dashboard, a static page served by the node
//! itself (its HTML, script and style are embedded in the binary: no CDN,
//! works offline). The page holds no data: it reads the API like any
//! client (`/v1/status`, `/v1/components`, `/metrics`, `/v1/watch`, and
//! `/v1/upgrade?dry_run=true` for a dry run), sending the token the
//! operator types in (kept in the tab's session storage) so the API's
//! roles apply as they do to the CLI. So the three assets need no token.
//!
//! The page is same-origin with the API, which the cross-site guard lets
//! through; a content security policy keeps it to its own scripts.

use axum::Router;
use axum::http::header;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;

use crate::node::NodeHandle;

const INDEX_HTML: &str = include_str!("ui/index.html");
const APP_JS: &str = include_str!("ui/app.js");
const STYLE_CSS: &str = include_str!("ui/style.css");

/// Only this page's own scripts, styles and API calls; never in a frame.
const CONTENT_SECURITY_POLICY: &str =
    "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'none'";

pub(super) fn routes() -> Router<NodeHandle> {
    Router::new()
        .route(
            "/ui",
            get(|| async { asset("text/html; charset=utf-8", INDEX_HTML) }),
        )
        .route("/ui/", get(|| async { Redirect::permanent("/ui") }))
        .route(
            "/ui/app.js",
            get(|| async { asset("text/javascript; charset=utf-8", APP_JS) }),
        )
        .route(
            "/ui/style.css",
            get(|| async { asset("text/css; charset=utf-8", STYLE_CSS) }),
        )
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}
