//! Who may call what: every route of the API with the role it needs and
//! the body it takes, in one table.
//!
//! Roles are ordered, each including the ones before it:
//!
//! | role    | may                                                          |
//! |---------|--------------------------------------------------------------|
//! | `read`  | status, queries, metrics, the component history and results |
//! | `write` | all of `read`, and propose commands                          |
//! | `admin` | all of `write`, and change the cluster: upgrades and dry runs, rollbacks, membership, leadership, snapshots and backups |
//!
//! The dashboard's static page (`/ui` and its script and style) needs no
//! token either: it holds no data, and reads the API with the operator's.
//!
//! `write` exists so the programs that feed a cluster its commands do not
//! hold the keys to replace its logic or read out its whole state (a
//! backup is the state). `/health` and `/ready` need no token: load
//! balancers and Kubernetes probes call them without credentials, and they
//! tell only whether the node works and whether it can serve now.
//!
//! The table is consulted by the authentication middleware (the role) and
//! by the admission middleware (how large a body may be, how long it may
//! take); the router in [`super::server`] and [`super::upgrades`] maps the
//! same paths to handlers. A path not listed (answered `404` or `405`)
//! needs `read`, so a client without a token learns nothing from it.

use axum::http::Method;

/// What a token may do; `Read < Write < Admin`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    Read,
    Write,
    Admin,
}

impl Role {
    /// The name used in token files and error messages.
    pub fn name(self) -> &'static str {
        match self {
            Role::Read => "read",
            Role::Write => "write",
            Role::Admin => "admin",
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Role {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "read" => Ok(Role::Read),
            "write" => Ok(Role::Write),
            "admin" => Ok(Role::Admin),
            other => Err(format!(
                "unknown role `{other}` (roles: read, write, admin)"
            )),
        }
    }
}

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Anyone, with or without a token.
    Open,
    /// A token of this role or a higher one.
    Role(Role),
}

/// What a route's request body is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    /// None expected (GET, DELETE): read as a JSON body would be, so a
    /// client sending one anyway is bounded the same way.
    None,
    /// JSON, up to `MAX_API_BODY_BYTES`, within `API_BODY_TIMEOUT`.
    Json,
    /// A component, up to `MAX_COMPONENT_BYTES`, within
    /// `API_COMPONENT_BODY_TIMEOUT`, at most `API_MAX_COMPONENT_UPLOADS` at
    /// once.
    Component,
}

/// One row of [`ROUTES`].
#[derive(Debug, Clone, Copy)]
pub struct RoutePolicy {
    pub method: Verb,
    /// The path; a segment `{name}` matches any one segment.
    pub path: &'static str,
    pub need: Need,
    pub body: BodyKind,
}

/// The HTTP methods the API uses (`http::Method` cannot be matched in a
/// `const` table).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Get,
    Post,
    Delete,
}

impl Verb {
    fn matches(self, method: &Method) -> bool {
        match self {
            Verb::Get => method == Method::GET || method == Method::HEAD,
            Verb::Post => method == Method::POST,
            Verb::Delete => method == Method::DELETE,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Verb::Get => "GET",
            Verb::Post => "POST",
            Verb::Delete => "DELETE",
        }
    }
}

const fn route(method: Verb, path: &'static str, need: Need, body: BodyKind) -> RoutePolicy {
    RoutePolicy {
        method,
        path,
        need,
        body,
    }
}

use BodyKind::{Component, Json};
use Need::Open;
use Verb::{Delete, Get, Post};
const READ: Need = Need::Role(Role::Read);
const WRITE: Need = Need::Role(Role::Write);
const ADMIN: Need = Need::Role(Role::Admin);
const NONE: BodyKind = BodyKind::None;

/// Every route of the API: the one place its role is decided.
pub const ROUTES: &[RoutePolicy] = &[
    route(Get, "/health", Open, NONE),
    route(Get, "/ready", Open, NONE),
    // The dashboard's static assets: no data (the page calls the API with
    // the operator's token).
    route(Get, "/ui", Open, NONE),
    route(Get, "/ui/", Open, NONE),
    route(Get, "/ui/app.js", Open, NONE),
    route(Get, "/ui/style.css", Open, NONE),
    route(Get, "/metrics", READ, NONE),
    route(Get, "/v1/status", READ, NONE),
    route(Get, "/v1/watch", READ, NONE),
    route(Post, "/v1/query", READ, Json),
    route(Get, "/v1/components", READ, NONE),
    route(Get, "/v1/results", READ, NONE),
    route(Post, "/v1/propose", WRITE, Json),
    route(Post, "/v1/upgrade", ADMIN, Component),
    route(Post, "/v1/rollback", ADMIN, Json),
    route(Post, "/v1/members", ADMIN, Json),
    route(Delete, "/v1/members/{id}", ADMIN, NONE),
    route(Post, "/v1/leader", ADMIN, Json),
    route(Post, "/v1/snapshot", ADMIN, Json),
    route(Get, "/v1/snapshot/latest", ADMIN, NONE),
];

/// The policy of a path no route serves: `read`, a JSON-sized body.
const UNKNOWN: RoutePolicy = route(Get, "", READ, NONE);

/// The policy for a request.
pub fn policy(method: &Method, path: &str) -> RoutePolicy {
    ROUTES
        .iter()
        .find(|route| route.method.matches(method) && path_matches(route.path, path))
        .copied()
        .unwrap_or(UNKNOWN)
}

fn path_matches(pattern: &str, path: &str) -> bool {
    let mut wanted = pattern.split('/');
    let mut given = path.split('/');
    loop {
        match (wanted.next(), given.next()) {
            (None, None) => return true,
            (Some(w), Some(g)) if w == g || (w.starts_with('{') && !g.is_empty()) => {}
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_are_ordered() {
        assert!(Role::Read < Role::Write && Role::Write < Role::Admin);
        for role in [Role::Read, Role::Write, Role::Admin] {
            assert_eq!(role.name().parse::<Role>(), Ok(role));
        }
        assert!("root".parse::<Role>().is_err());
    }

    #[test]
    fn each_route_has_its_role() {
        let need = |method: Method, path: &str| policy(&method, path).need;
        assert_eq!(need(Method::GET, "/health"), Open);
        assert_eq!(need(Method::GET, "/ready"), Open);
        assert_eq!(need(Method::GET, "/v1/status"), READ);
        assert_eq!(need(Method::POST, "/v1/query"), READ);
        assert_eq!(need(Method::POST, "/v1/propose"), WRITE);
        assert_eq!(need(Method::POST, "/v1/upgrade"), ADMIN);
        assert_eq!(need(Method::DELETE, "/v1/members/7"), ADMIN);
        assert_eq!(need(Method::GET, "/v1/snapshot/latest"), ADMIN);
        assert_eq!(need(Method::POST, "/v1/snapshot"), ADMIN);
        // Not routes: read, answered 404/405 afterwards.
        assert_eq!(need(Method::DELETE, "/v1/members/"), READ);
        assert_eq!(need(Method::GET, "/v1/propose"), READ);
        assert_eq!(need(Method::GET, "/nope"), READ);
        assert_eq!(policy(&Method::POST, "/v1/upgrade").body, Component);
    }

    #[test]
    fn every_route_is_listed_once() {
        for (i, a) in ROUTES.iter().enumerate() {
            for b in &ROUTES[i + 1..] {
                assert!(
                    !(a.method == b.method && a.path == b.path),
                    "{} {} listed twice",
                    a.method.name(),
                    a.path
                );
            }
        }
    }
}
