//! Run a single-node cluster from code: start a node on a temporary data
//! dir, propose a few commands to the built-in counter guest, query it, and
//! show that a restart replays the log into the same state.
//!
//! `cargo run --example single_node`

use iroh_raft::node::{self, NoPeers, NodeConfig};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let node = node::start(NodeConfig::new(dir.path()), NoPeers)?;
    for command in ["add 5", "add 2", "sub 1"] {
        let applied = node.propose(command.as_bytes().to_vec()).await?;
        let result = applied.result.map_err(anyhow::Error::msg)?;
        println!(
            "{command:<8} -> {} (log index {})",
            String::from_utf8_lossy(&result),
            applied.index
        );
    }
    node.shutdown().await;
    drop(node);

    let node = node::start(NodeConfig::new(dir.path()), NoPeers)?;
    let answer = node.query(b"get".to_vec()).await?;
    let value = answer.result.map_err(anyhow::Error::msg)?;
    println!(
        "after a restart: get -> {}",
        String::from_utf8_lossy(&value)
    );
    let status = node.status().await?;
    println!(
        "node {} is {} in term {}, applied index {}, guest {} {}",
        status.id,
        status.role,
        status.term,
        status.applied_index,
        status.guest.name,
        status.guest.version
    );
    node.shutdown().await;
    Ok(())
}
