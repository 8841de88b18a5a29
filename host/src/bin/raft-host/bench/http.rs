//! The bench's HTTP/1.1 side: endpoints, shared keep-alive connections
//! (hyper's low-level client: one request at a time per connection, opened
//! again after a transport error), and what a failed request counts as.
//!
//! Finding the leader goes through the client crate; the measured requests
//! do not: the bench controls which connection carries each request (one
//! in flight per connection, shared by `--clients / --connections`
//! clients) and counts every failure by kind, where the client crate's
//! pool and failover would hide both.

use std::time::Duration;

use anyhow::{Context as _, bail};
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::{Method, Request, Uri};
use hyper_util::rt::TokioIo;
use tokio::sync::Mutex;

use super::{MAX_VALUE_BYTES, Plan};

/// How long finding the endpoints' roles may take.
const STATUS_TIMEOUT: Duration = Duration::from_secs(5);

/// The largest response body read (an answer to `get` holds one value).
const MAX_RESPONSE_BYTES: usize = MAX_VALUE_BYTES + 64 * 1024;

/// One shared keep-alive connection; `None` until (re)opened.
pub(super) struct Connection {
    pub(super) endpoint: Endpoint,
    pub(super) sender: Mutex<Option<SendRequest<Full<Bytes>>>>,
}

#[derive(Debug, Clone)]
pub(super) struct Endpoint {
    pub(super) url: String,
    /// `host:port`, for connecting and the `Host` header.
    pub(super) authority: String,
}

pub(super) fn parse_endpoint(url: &str) -> anyhow::Result<Endpoint> {
    let uri: Uri = url
        .trim_end_matches('/')
        .parse()
        .with_context(|| format!("{url:?} is not a URL"))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some("https") => bail!(
            "{url}: the bench speaks plain http only (measure a TLS node through a local \
             proxy, or without --api-tls-cert)"
        ),
        _ => bail!("{url:?} is not an http:// URL"),
    }
    let authority = uri
        .authority()
        .with_context(|| format!("{url:?} has no host"))?;
    let authority = match authority.port_u16() {
        Some(_) => authority.to_string(),
        None => format!("{}:80", authority.host()),
    };
    if uri.path() != "/" && !uri.path().is_empty() {
        bail!("{url:?}: give the node's base URL, without a path");
    }
    Ok(Endpoint {
        url: format!("http://{authority}"),
        authority,
    })
}

/// The endpoint whose node says it leads (asked with the client crate).
pub(super) async fn find_leader(
    endpoints: &[Endpoint],
    token: Option<&str>,
) -> anyhow::Result<Endpoint> {
    let options = iroh_raft_client::ClientOptions {
        token: token.map(str::to_string),
        timeout: Some(STATUS_TIMEOUT),
        ..Default::default()
    };
    let mut seen = Vec::new();
    for endpoint in endpoints {
        let client = iroh_raft_client::Client::with_options(endpoint.url.as_str(), &options)?;
        let answer = tokio::time::timeout(STATUS_TIMEOUT, client.status())
            .await
            .map_err(|_| anyhow::anyhow!("no answer in {STATUS_TIMEOUT:?}"))
            .and_then(|status| Ok(status?.role));
        match answer {
            Ok(role) if role == "leader" => return Ok(endpoint.clone()),
            Ok(role) => seen.push(format!("{}: {role}", endpoint.url)),
            Err(error) => seen.push(format!("{}: {error:#}", endpoint.url)),
        }
    }
    bail!(
        "no leader among the endpoints ({}); give the leader's URL in --endpoints, or \
         --target all",
        seen.join("; ")
    )
}

pub(super) async fn connect(endpoint: &Endpoint) -> anyhow::Result<SendRequest<Full<Bytes>>> {
    let stream = tokio::net::TcpStream::connect(&endpoint.authority).await?;
    // One small request per round trip: Nagle would hold it back.
    stream.set_nodelay(true)?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    // The connection's I/O task ends when the sender is dropped or the
    // server closes.
    tokio::spawn(connection);
    Ok(sender)
}

pub(super) fn request(
    endpoint: &Endpoint,
    plan: &Plan,
    method: Method,
    path: &str,
    body: Bytes,
) -> anyhow::Result<Request<Full<Bytes>>> {
    let mut builder = Request::builder()
        .method(method)
        .uri(path)
        .header(hyper::header::HOST, &endpoint.authority);
    if !body.is_empty() {
        builder = builder.header(hyper::header::CONTENT_TYPE, "application/json");
    }
    if let Some(authorization) = &plan.authorization {
        builder = builder.header(hyper::header::AUTHORIZATION, authorization);
    }
    Ok(builder.body(Full::new(body))?)
}

pub(super) async fn read_body(body: hyper::body::Incoming) -> anyhow::Result<Bytes> {
    let limited = http_body_util::Limited::new(body, MAX_RESPONSE_BYTES);
    match limited.collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) => bail!("reading the answer: {error}"),
    }
}

pub(super) enum Failure {
    /// The connection could not be opened.
    Connect(String),
    /// The connection broke or timed out.
    Transport(String),
    /// An answer other than 200: its status and `error.code`.
    Status(u16, String),
}

impl Failure {
    pub(super) fn kind(&self) -> String {
        match self {
            Failure::Connect(kind) => format!("connect: {kind}"),
            Failure::Transport(kind) => kind.clone(),
            Failure::Status(status, code) if code.is_empty() => format!("http {status}"),
            Failure::Status(status, code) => format!("http {status} {code}"),
        }
    }
}

/// Send one request on the connection (opening it if needed) and read the
/// whole answer.
pub(super) async fn send(
    connection: &Connection,
    plan: &Plan,
    path: &str,
    body: Bytes,
) -> Result<(), Failure> {
    let mut slot = connection.sender.lock().await;
    let sender = match slot.as_mut() {
        Some(sender) if !sender.is_closed() => sender,
        _ => {
            let fresh = connect(&connection.endpoint)
                .await
                .map_err(|error| Failure::Connect(io_kind(&error)))?;
            slot.insert(fresh)
        }
    };
    sender
        .ready()
        .await
        .map_err(|error| Failure::Transport(format!("connection: {error}")))?;
    let request = request(&connection.endpoint, plan, Method::POST, path, body)
        .map_err(|error| Failure::Transport(format!("request: {error}")))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|error| Failure::Transport(format!("connection: {error}")))?;
    let status = response.status();
    let body = read_body(response.into_body())
        .await
        .map_err(|error| Failure::Transport(format!("{error}")))?;
    if status == hyper::StatusCode::OK {
        return Ok(());
    }
    let code = serde_json::from_slice::<iroh_raft_client::ErrorBody>(&body)
        .map(|answer| answer.error.code)
        .unwrap_or_default();
    Err(Failure::Status(status.as_u16(), code))
}

/// A connect error by its kind (`connection refused`), not its full text:
/// the kinds are what the table counts.
fn io_kind(error: &anyhow::Error) -> String {
    match error.downcast_ref::<std::io::Error>() {
        Some(io) => io.kind().to_string(),
        None => error.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_parse_or_say_why() {
        let endpoint = parse_endpoint("http://127.0.0.1:7701/").expect("a base URL");
        assert_eq!(endpoint.authority, "127.0.0.1:7701");
        assert_eq!(
            parse_endpoint("http://localhost")
                .expect("no port")
                .authority,
            "localhost:80"
        );
        for bad in [
            "https://127.0.0.1:7701",
            "127.0.0.1:7701",
            "http://h:1/v1",
            "not a url",
        ] {
            assert!(parse_endpoint(bad).is_err(), "{bad} accepted");
        }
    }
}
