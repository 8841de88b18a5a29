//! Requests a web page could make a browser send are refused before any
//! route sees them: cross-site request forgery and DNS rebinding.
//!
//! A page on another site can make a browser on the node's machine send a
//! "simple" cross-origin request (a POST with a `text/plain` or form body,
//! or none) without asking first, and with DNS rebinding (its own name
//! resolving to 127.0.0.1) even read the answers. So:
//!
//! - a request whose `Host` is a name (not an IP address or `localhost`)
//!   must name one of the node's [`ApiAccess::allowed_hosts`]: a rebinding
//!   page's requests carry its own name;
//! - a request with an `Origin` (browsers send one on cross-origin and on
//!   all POST requests) must come from the node's own origin;
//! - POST, PUT and PATCH must carry `Content-Type: application/json` (or a
//!   component type on `/v1/upgrade`): a page cannot send those types
//!   cross-origin without a CORS preflight, which the API never grants.
//!
//! The CLI, `curl -H 'content-type: application/json'` and programs send
//! no `Origin` and an address or an allowed name as `Host`.

use axum::extract::Request;
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::policy::{BodyKind, policy};
use super::server::ApiError;

/// Who may reach the API besides clients using an IP address or
/// `localhost`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApiAccess {
    /// Host names (without port) the API answers to, e.g. the node's DNS
    /// name when clients use it; compared case-insensitively.
    pub allowed_hosts: Vec<String>,
}

/// The content types `/v1/upgrade` takes (a component's bytes).
const COMPONENT_TYPES: &[&str] = &["application/wasm", "application/octet-stream"];

/// The answer that refuses what a browser could have been tricked into
/// sending (see the module doc), if this is such a request; the first
/// check of [`super::gate`].
pub(super) fn refusal(access: &ApiAccess, request: &Request) -> Option<Response> {
    check(
        access,
        request.method(),
        request.uri().path(),
        request.headers(),
    )
    .err()
    .map(IntoResponse::into_response)
}

fn check(
    access: &ApiAccess,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
) -> Result<(), ApiError> {
    let host = headers
        .get(header::HOST)
        .map(|value| value.to_str().unwrap_or("\u{fffd}"));
    if let Some(host) = host {
        let name = host_name(host);
        if !is_address(name)
            && !access
                .allowed_hosts
                .iter()
                .any(|allowed| allowed.eq_ignore_ascii_case(name))
        {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden_host",
                format!(
                    "this node does not answer to the host name `{name}` (a web page using \
                     DNS rebinding would send its own); use an address, or allow the name \
                     with --api-allowed-host {name}"
                ),
            ));
        }
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or("\u{fffd}");
        let same = host.is_some_and(|host| {
            origin
                .strip_prefix("http://")
                .or_else(|| origin.strip_prefix("https://"))
                .is_some_and(|rest| rest.eq_ignore_ascii_case(host))
        });
        if !same {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden_origin",
                format!(
                    "a request from the web page at `{origin}` (another site) is refused: \
                     the API takes requests from programs, the CLI and its own pages only"
                ),
            ));
        }
    }
    if matches!(*method, Method::POST | Method::PUT | Method::PATCH) {
        let content_type = headers
            .get(header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .map(|value| {
                value
                    .split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_ascii_lowercase()
            });
        let accepted: &[&str] = if policy(method, path).body == BodyKind::Component {
            COMPONENT_TYPES
        } else {
            &["application/json"]
        };
        if !content_type
            .as_deref()
            .is_some_and(|given| accepted.contains(&given))
        {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                format!(
                    "{method} {path} needs `Content-Type: {}` (got {}); with curl add \
                     -H 'content-type: {}'",
                    accepted.join("` or `"),
                    content_type.map_or("none".to_string(), |given| format!("`{given}`")),
                    accepted[0]
                ),
            ));
        }
    }
    Ok(())
}

/// The host part of a `Host` header (`name:port`, `[v6]:port`, `name`).
fn host_name(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    }
}

/// An IP address or `localhost`: names no other site can hand out.
fn is_address(name: &str) -> bool {
    name.eq_ignore_ascii_case("localhost") || name.parse::<std::net::IpAddr>().is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(name.clone(), HeaderValue::from_str(value).expect("value"));
        }
        map
    }

    fn code(result: Result<(), ApiError>) -> Option<String> {
        result.err().map(|error| error.info.code)
    }

    #[test]
    fn programs_and_the_cli_pass() {
        let access = ApiAccess::default();
        let json = (header::CONTENT_TYPE, "application/json");
        for host in ["127.0.0.1:7700", "localhost:7700", "[::1]:7700", "10.0.0.5"] {
            let request = headers(&[(header::HOST, host), json.clone()]);
            assert_eq!(
                code(check(&access, &Method::POST, "/v1/propose", &request)),
                None
            );
        }
        let upgrade = headers(&[
            (header::HOST, "127.0.0.1:7700"),
            (header::CONTENT_TYPE, "application/wasm"),
        ]);
        assert_eq!(
            code(check(&access, &Method::POST, "/v1/upgrade", &upgrade)),
            None
        );
        let get = headers(&[(header::HOST, "127.0.0.1:7700")]);
        assert_eq!(code(check(&access, &Method::GET, "/v1/status", &get)), None);
        let delete = headers(&[(header::HOST, "127.0.0.1:7700")]);
        assert_eq!(
            code(check(&access, &Method::DELETE, "/v1/members/2", &delete)),
            None
        );
        let same_origin = headers(&[
            (header::HOST, "127.0.0.1:7700"),
            (header::ORIGIN, "http://127.0.0.1:7700"),
            json,
        ]);
        assert_eq!(
            code(check(&access, &Method::POST, "/v1/query", &same_origin)),
            None
        );
    }

    #[test]
    fn what_a_web_page_can_send_is_refused() {
        let access = ApiAccess::default();
        let text = headers(&[
            (header::HOST, "127.0.0.1:7700"),
            (header::CONTENT_TYPE, "text/plain"),
        ]);
        assert_eq!(
            code(check(&access, &Method::POST, "/v1/propose", &text)).as_deref(),
            Some("unsupported_media_type")
        );
        let none = headers(&[(header::HOST, "127.0.0.1:7700")]);
        assert_eq!(
            code(check(&access, &Method::POST, "/v1/snapshot", &none)).as_deref(),
            Some("unsupported_media_type")
        );
        let foreign = headers(&[
            (header::HOST, "127.0.0.1:7700"),
            (header::ORIGIN, "http://evil.example"),
            (header::CONTENT_TYPE, "application/json"),
        ]);
        assert_eq!(
            code(check(&access, &Method::POST, "/v1/propose", &foreign)).as_deref(),
            Some("forbidden_origin")
        );
        let rebound = headers(&[(header::HOST, "evil.example:7700")]);
        assert_eq!(
            code(check(
                &access,
                &Method::GET,
                "/v1/snapshot/latest",
                &rebound
            ))
            .as_deref(),
            Some("forbidden_host")
        );
    }

    #[test]
    fn an_allowed_name_passes() {
        let access = ApiAccess {
            allowed_hosts: vec!["node1.internal".into()],
        };
        let named = headers(&[(header::HOST, "NODE1.internal:7700")]);
        assert_eq!(
            code(check(&access, &Method::GET, "/v1/status", &named)),
            None
        );
        let other = headers(&[(header::HOST, "node2.internal:7700")]);
        assert_eq!(
            code(check(&access, &Method::GET, "/v1/status", &other)).as_deref(),
            Some("forbidden_host")
        );
    }
}
