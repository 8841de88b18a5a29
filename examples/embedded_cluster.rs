//! A 3-node cluster in one process, through the library's `HostBuilder`.
//!
//! `cargo run --example embedded_cluster`
//!
//! Node 1 creates the cluster; nodes 2 and 3 bind (so their tickets are
//! known), and start once node 1 added them as voters. A proposal through
//! a follower is forwarded to the leader; one through the leader applies
//! directly. Loopback only, relays and discovery off: nothing leaves the
//! machine. Exits non-zero if a proposal does not give the expected
//! counter value.

use iroh_raft::host::HostBuilder;
use iroh_raft::node::Consistency;
use iroh_raft::wasm::GuestFailure;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let dirs = [
        tempfile::tempdir()?,
        tempfile::tempdir()?,
        tempfile::tempdir()?,
    ];

    // The user code: a cluster of three.
    let leader = HostBuilder::new(dirs[0].path()).start().await?;
    let mut followers = Vec::new();
    for (id, dir) in (2..).zip(&dirs[1..]) {
        let joining = HostBuilder::new(dir.path())
            .id(id)
            .join(leader.ticket().clone())
            .bind()
            .await?;
        let ticket = joining.ticket();
        let (added, follower) = tokio::join!(leader.add_voter(&ticket), joining.start());
        followers.push(follower?);
        println!("node {id} joined at log index {}", added?);
    }
    let via_follower = followers[0].node().propose(b"add 5".to_vec()).await?;
    let via_leader = leader.node().propose(b"add 5".to_vec()).await?;

    let (first, second) = (text(&via_follower.result), text(&via_leader.result));
    println!("add 5 through node 2 (a follower): {first}");
    println!("add 5 through node 1 (the leader): {second}");
    let read = followers[1]
        .node()
        .query_with(b"get".to_vec(), Consistency::Linearizable)
        .await?;
    let read = text(&read.result);
    println!("get on node 3: {read}");
    let voters = leader.node().status().await?.voters;
    println!("voters: {voters:?}");

    for follower in followers {
        follower.shutdown().await;
    }
    leader.shutdown().await;
    anyhow::ensure!(
        (first.as_str(), second.as_str(), read.as_str()) == ("5", "10", "10"),
        "unexpected results: {first}, {second}, {read}"
    );
    anyhow::ensure!(voters == [1, 2, 3], "unexpected voters {voters:?}");
    println!("ok");
    Ok(())
}

/// A counter result as text, or the guest's failure.
fn text(result: &Result<Vec<u8>, GuestFailure>) -> String {
    match result {
        Ok(bytes) => String::from_utf8_lossy(bytes).into_owned(),
        Err(failure) => format!("{failure:?}"),
    }
}
