//! Endpoint lists: the URLs a client may call, which of them answered
//! last, and which Raft id each one's node has (to follow leader hints).

use std::sync::{Arc, Mutex};

use crate::error::Error;

/// Parse one endpoint: a base URL (`http://` or `https://`), or a bare
/// `host:port`, which means `http://host:port`. A trailing `/` is dropped.
pub fn parse_endpoint(text: &str) -> Result<String, Error> {
    let text = text.trim();
    let url = if text.contains("://") {
        text.to_string()
    } else {
        format!("http://{text}")
    };
    let url = match url.find("://") {
        Some(scheme) if url.len() > scheme + 3 => url.trim_end_matches('/').to_string(),
        _ => url,
    };
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or_else(|| {
            Error::Config(format!(
                "{text:?} is not an endpoint: give http://HOST:PORT, https://HOST:PORT or HOST:PORT"
            ))
        })?;
    let host = rest.split('/').next().unwrap_or_default();
    if host.is_empty()
        || host.starts_with(':')
        || host
            .chars()
            .any(|c| c.is_whitespace() || c == '?' || c == '#')
    {
        return Err(Error::Config(format!(
            "{text:?} is not an endpoint: it names no host"
        )));
    }
    Ok(url)
}

/// Parse a list of endpoints: each item may itself hold several,
/// separated by commas or white space (`"a:1,b:2"`); at least one.
pub fn parse_endpoints<I, S>(items: I) -> Result<Vec<String>, Error>
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let mut urls = Vec::new();
    for item in items {
        for part in item
            .as_ref()
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|p| !p.is_empty())
        {
            let url = parse_endpoint(part)?;
            if !urls.contains(&url) {
                urls.push(url);
            }
        }
    }
    if urls.is_empty() {
        return Err(Error::Config("no endpoint given".into()));
    }
    Ok(urls)
}

/// The endpoints of a client, shared by its clones.
#[derive(Debug, Clone)]
pub(crate) struct Endpoints {
    urls: Arc<[String]>,
    state: Arc<Mutex<State>>,
}

#[derive(Debug)]
struct State {
    /// Where the next call starts: the endpoint that answered last.
    preferred: usize,
    /// Each endpoint's Raft id, once learned from its `/v1/status`.
    ids: Vec<Option<u64>>,
}

impl Endpoints {
    pub(crate) fn new(urls: Vec<String>) -> Self {
        let n = urls.len();
        Endpoints {
            urls: urls.into(),
            state: Arc::new(Mutex::new(State {
                preferred: 0,
                ids: vec![None; n],
            })),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.urls.len()
    }

    pub(crate) fn url(&self, i: usize) -> &str {
        &self.urls[i]
    }

    pub(crate) fn urls(&self) -> &[String] {
        &self.urls
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // The state is two plain fields, consistent after any panic.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn preferred(&self) -> usize {
        self.state().preferred
    }

    pub(crate) fn answered(&self, i: usize) {
        self.state().preferred = i;
    }

    pub(crate) fn learn(&self, i: usize, id: u64) {
        self.state().ids[i] = Some(id);
    }

    pub(crate) fn ids(&self) -> Vec<Option<u64>> {
        self.state().ids.clone()
    }

    /// The endpoint whose node has Raft id `id`, if known.
    pub(crate) fn of_id(&self, id: u64) -> Option<usize> {
        self.state().ids.iter().position(|known| *known == Some(id))
    }
}

/// Anything that names endpoints: one URL or `host:port` (or several,
/// comma-separated, in one string), or a list of them.
pub trait IntoEndpoints {
    /// The items, each of which may hold several comma-separated endpoints.
    fn into_items(self) -> Vec<String>;
}

impl IntoEndpoints for &str {
    fn into_items(self) -> Vec<String> {
        vec![self.to_string()]
    }
}

impl IntoEndpoints for String {
    fn into_items(self) -> Vec<String> {
        vec![self]
    }
}

impl IntoEndpoints for &String {
    fn into_items(self) -> Vec<String> {
        vec![self.clone()]
    }
}

impl<S: AsRef<str>> IntoEndpoints for Vec<S> {
    fn into_items(self) -> Vec<String> {
        self.iter().map(|s| s.as_ref().to_string()).collect()
    }
}

impl<S: AsRef<str>> IntoEndpoints for &[S] {
    fn into_items(self) -> Vec<String> {
        self.iter().map(|s| s.as_ref().to_string()).collect()
    }
}

impl<S: AsRef<str>, const N: usize> IntoEndpoints for [S; N] {
    fn into_items(self) -> Vec<String> {
        self.iter().map(|s| s.as_ref().to_string()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_parse_or_say_why() {
        assert_eq!(
            parse_endpoint("127.0.0.1:7701").expect("bare"),
            "http://127.0.0.1:7701"
        );
        assert_eq!(
            parse_endpoint("https://node:7701/").expect("https"),
            "https://node:7701"
        );
        for bad in ["ftp://h:1", "http://", "", "http:// x"] {
            assert!(parse_endpoint(bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(
            parse_endpoints(["a:1,b:2", "a:1", "http://c:3"]).expect("list"),
            vec!["http://a:1", "http://b:2", "http://c:3"]
        );
        assert!(parse_endpoints(Vec::<String>::new()).is_err());
        assert!(parse_endpoints([" , "]).is_err());
    }
}
