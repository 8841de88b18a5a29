//! A host's API: the route table and the router agree (every route in
//! [`crate::api::policy::ROUTES`] is served, and answers a client without
//! the role it lists with 401 or 403), and a host refuses an open API
//! beyond loopback before it creates anything. Here, not in `api`, because
//! they start a host (and `api` does not import `host`).

use super::{HostBuilder, HostError};
use crate::api::ApiTokens;
use crate::api::policy::{BodyKind, Need, ROUTES, Role, Verb};

const READER: &str = "read-0123456789abcdef";
const ADMIN: &str = "admin-0123456789abcdef";

/// Call every route as `token` (none: no header); the statuses, in the
/// table's order.
fn call_every_route(url: &str, token: Option<&str>) -> Vec<u16> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    ROUTES
        .iter()
        .map(|route| {
            let url = format!("{url}{}", route.path.replace("{id}", "7"));
            let mut request = match route.method {
                Verb::Get => agent.get(&url).force_send_body(),
                Verb::Delete => agent.delete(&url).force_send_body(),
                Verb::Post => agent.post(&url),
            };
            if let Some(token) = token {
                request = request.header("authorization", format!("Bearer {token}"));
            }
            let (content_type, body): (&str, &[u8]) = match route.body {
                BodyKind::Component => ("application/wasm", b""),
                BodyKind::Json => ("application/json", b"{}"),
                BodyKind::None => ("application/json", b""),
            };
            let response = request
                .header("content-type", content_type)
                .send(body)
                .expect("an answer");
            response.status().as_u16()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_route_table_matches_the_router() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut tokens = ApiTokens::default();
    tokens.add(Role::Read, READER).expect("token");
    tokens.add(Role::Admin, ADMIN).expect("token");
    let host = HostBuilder::new(dir.path())
        .api("127.0.0.1:0".parse().expect("addr"))
        .api_tokens(tokens)
        .start()
        .await
        .expect("start");
    let url = host.api_url().expect("an API");
    let (anonymous, reader, admin) = tokio::task::spawn_blocking(move || {
        (
            call_every_route(&url, None),
            call_every_route(&url, Some(READER)),
            call_every_route(&url, Some(ADMIN)),
        )
    })
    .await
    .expect("join");
    for (i, route) in ROUTES.iter().enumerate() {
        let what = format!("{} {}", route.method.name(), route.path);
        match route.need {
            Need::Open => assert_ne!(anonymous[i], 401, "{what}"),
            Need::Role(_) => assert_eq!(anonymous[i], 401, "{what}"),
        }
        match route.need {
            Need::Role(needed) if needed > Role::Read => assert_eq!(reader[i], 403, "{what}"),
            _ => assert!(![401, 403].contains(&reader[i]), "{what}: {}", reader[i]),
        }
        // The router serves it (a handler's own error is fine here).
        assert!(
            ![401, 403, 404, 405].contains(&admin[i]),
            "{what}: {}",
            admin[i]
        );
    }
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_api_beyond_loopback_is_refused_before_anything_is_created() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let refused = HostBuilder::new(&data)
        .api("0.0.0.0:0".parse().expect("addr"))
        .bind()
        .await;
    assert!(
        matches!(refused, Err(HostError::ApiExposure(_))),
        "{refused:?}"
    );
    assert!(!data.exists());
}
