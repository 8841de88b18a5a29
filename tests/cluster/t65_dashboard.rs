//! The dashboard (`GET /ui`) in a real browser (headless Chromium through
//! the DevTools protocol, `common::browser`): on a 3-node `kv_store`
//! cluster of `raft-host` processes the page shows the three members and
//! the leader, and updates after a write (the applied index, the live key
//! browser); on a node with API tokens the page loads without one but
//! shows the API's refusal until the operator gives a token.

use std::os::unix::fs::PermissionsExt as _;

use crate::common::browser::Page;
use crate::common::cluster::Cluster;

#[test]
fn t65_the_dashboard_shows_the_cluster_and_follows_writes() {
    let cluster = Cluster::start(3, "kv_store", &[]);
    let leader = cluster.leader();
    let follower = cluster.follower_of(leader);
    let mut page = Page::open(&format!(
        "{}/ui?watch=user/",
        cluster.member(leader).process().api_url
    ));
    page.wait_until(
        "three members",
        "document.querySelectorAll('#members tr.member').length === 3",
    );
    page.wait_until(
        "the leader's row",
        &format!(
            "document.querySelector('#members tr.leader')?.dataset.id === '{leader}' \
             && document.getElementById('leader').textContent === 'node {leader}'"
        ),
    );
    let applied_before: u64 = page.text_of("applied-index").parse().expect("a number");

    let written = cluster
        .member(leader)
        .client()
        .propose(b"put user/ann admin")
        .expect("a write");
    assert!(written.index > applied_before);
    page.wait_until(
        "the new key, live",
        "document.querySelector('#keys tr[data-key=\"user/ann\"] td.value')?.textContent === 'admin'",
    );
    page.wait_until(
        "the write's index",
        &format!(
            "Number(document.getElementById('applied-index').textContent) >= {}",
            written.index
        ),
    );
    assert_eq!(page.text_of("guest-world"), "store");

    // A follower's page knows the leader too.
    let mut on_follower = Page::open(&format!(
        "{}/ui",
        cluster.member(follower).process().api_url
    ));
    on_follower.wait_until(
        "the leader, seen from a follower",
        &format!("document.getElementById('leader').textContent === 'node {leader}'"),
    );
    assert_eq!(on_follower.text_of("role"), "follower");
}

#[test]
fn t65_the_dashboard_respects_the_api_tokens() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tokens = dir.path().join("api-tokens");
    std::fs::write(&tokens, "read reader-token-0123456789\n").expect("write tokens");
    std::fs::set_permissions(&tokens, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let tokens = tokens.display().to_string();
    let cluster = Cluster::start(1, "kv_store", &["--api-tokens", &tokens]);
    let mut page = Page::open(&format!("{}/ui", cluster.member(1).process().api_url));
    // The page itself needs no token, the API it reads does.
    page.wait_until(
        "the API's refusal",
        "!document.getElementById('error').hidden \
         && document.getElementById('error').textContent.includes('401')",
    );
    assert_eq!(page.text_of("leader"), "?", "nothing shown without a token");
    page.eval("sessionStorage.setItem('iroh-raft-token', 'reader-token-0123456789'); refresh()")
        .expect("give the token");
    page.wait_until(
        "the cluster, with a read token",
        "document.getElementById('leader').textContent === 'node 1' \
         && document.getElementById('error').hidden",
    );
}
