//! The iroh-raft protocol between two iroh endpoints, step by step.
//!
//! `cargo run --example protocol_example`
//!
//! Two endpoints on loopback (relay and discovery off) each get a
//! `RaftProtocolHandler` for the `iroh-raft/0` ALPN. Endpoint B serves
//! through an iroh `Router`; endpoint A accepts by hand with
//! `handler.accept(connection)`, the shape of the original design. They
//! exchange real raft-rs messages (a vote request and its answer) as
//! `RaftMessage` frames, answer a `Heartbeat`, and refuse a stranger.

use iroh_raft::limits::MAX_FRAME_BYTES;
use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Context as _;
use iroh::endpoint::presets;
use iroh::protocol::{ProtocolHandler, Router};
use iroh::{Endpoint, RelayMode, SecretKey};
use iroh_raft::node::{NodeInbox, NodeMsg};
use iroh_raft::transport::codec::{read_frame, write_frame};
use iroh_raft::transport::message::{Heartbeat, RaftBatch, WireMessage};
use iroh_raft::transport::{PeerAddr, RAFT_ALPN, RaftProtocolHandler};
use protobuf::Message as _;
use raft::prelude::{Message, MessageType};
use tokio::sync::mpsc;

async fn endpoint(secret_key: SecretKey) -> anyhow::Result<Endpoint> {
    Endpoint::builder(presets::Minimal)
        .secret_key(secret_key)
        .alpns(vec![RAFT_ALPN.to_vec()])
        .relay_mode(RelayMode::Disabled)
        .clear_ip_transports()
        .bind_addr("127.0.0.1:0")?
        .clear_relay_transports()
        .bind()
        .await
        .context("binding an endpoint")
}

fn addr(endpoint: &Endpoint) -> PeerAddr {
    PeerAddr::new(endpoint.id(), endpoint.bound_sockets())
}

/// Send one request frame on a fresh stream and return the answer.
async fn request(
    from: &Endpoint,
    to: &Endpoint,
    frame: WireMessage,
) -> anyhow::Result<WireMessage> {
    let target = addr(to).endpoint_addr().context("valid address")?;
    let connection = from.connect(target, RAFT_ALPN).await?;
    let (mut send, mut recv) = connection.open_bi().await?;
    write_frame(&mut send, &frame).await?;
    let answer = read_frame(&mut recv, MAX_FRAME_BYTES)
        .await?
        .context("the peer closed the stream without answering")?;
    send.finish()?;
    Ok(answer)
}

fn vote_request(from: u64, to: u64, term: u64) -> Message {
    let mut message = Message::default();
    message.set_msg_type(MessageType::MsgRequestVote);
    message.from = from;
    message.to = to;
    message.term = term;
    message
}

async fn next_raft_message(inbox: &mut mpsc::Receiver<NodeMsg>) -> anyhow::Result<Message> {
    let received = tokio::time::timeout(Duration::from_secs(5), inbox.recv())
        .await
        .context("nothing arrived in time")?;
    match received {
        Some(NodeMsg::Raft(message)) => Ok(*message),
        other => anyhow::bail!("unexpected inbox item: {other:?}"),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let a = endpoint(SecretKey::generate()).await?;
    let b = endpoint(SecretKey::generate()).await?;
    println!("A: raft id 1, node id {}", a.id().fmt_short());
    println!("B: raft id 2, node id {}", b.id().fmt_short());

    // Both know the membership: raft id -> node id + address. Without it the
    // handlers refuse everyone (fail closed).
    let members: BTreeMap<u64, PeerAddr> = [(1, addr(&a)), (2, addr(&b))].into();

    // B: the handler on an iroh Router.
    let (b_tx, mut b_inbox) = mpsc::channel(64);
    let b_handler = RaftProtocolHandler::new(2, NodeInbox::from_sender(b_tx));
    b_handler.directory().set_members(&members);
    let router = Router::builder(b.clone())
        .accept(RAFT_ALPN, b_handler)
        .spawn();

    // A: the handler driven by hand, `handler.accept(connection)`.
    let (a_tx, mut a_inbox) = mpsc::channel(64);
    let a_handler = RaftProtocolHandler::new(1, NodeInbox::from_sender(a_tx));
    a_handler.directory().set_members(&members);
    let a_accept = a.clone();
    tokio::spawn(async move {
        while let Some(incoming) = a_accept.accept().await {
            let Ok(connection) = incoming.await else {
                continue;
            };
            let handler = a_handler.clone();
            tokio::spawn(async move { handler.accept(connection).await });
        }
    });

    // A asks B for its vote: a real raft-rs message in a RaftMessage frame.
    let vote = vote_request(1, 2, 5);
    let frame = WireMessage::RaftMessage(RaftBatch {
        messages: vec![vote.write_to_bytes()?],
    });
    let answer = request(&a, &b, frame).await?;
    println!("A -> B  RaftMessage[MsgRequestVote term 5]   answer: {answer:?}");
    let got = next_raft_message(&mut b_inbox).await?;
    println!(
        "B's Raft inbox got {:?} from {} (term {})",
        got.get_msg_type(),
        got.from,
        got.term
    );

    // B answers the vote the same way, A accepts it by hand.
    let mut granted = Message::default();
    granted.set_msg_type(MessageType::MsgRequestVoteResponse);
    granted.from = 2;
    granted.to = 1;
    granted.term = 5;
    let frame = WireMessage::RaftMessage(RaftBatch {
        messages: vec![granted.write_to_bytes()?],
    });
    let answer = request(&b, &a, frame).await?;
    println!("B -> A  RaftMessage[MsgRequestVoteResponse]  answer: {answer:?}");
    let got = next_raft_message(&mut a_inbox).await?;
    println!(
        "A's Raft inbox got {:?} from {} (reject: {})",
        got.get_msg_type(),
        got.from,
        got.reject
    );

    // A liveness check is answered with the same sequence number.
    let answer = request(&a, &b, WireMessage::Heartbeat(Heartbeat { sequence: 42 })).await?;
    println!("A -> B  Heartbeat 42                         answer: {answer:?}");

    // A message claiming to come from someone else is refused.
    let forged = vote_request(3, 2, 6);
    let frame = WireMessage::RaftMessage(RaftBatch {
        messages: vec![forged.write_to_bytes()?],
    });
    let answer = request(&a, &b, frame).await?;
    println!("A -> B  RaftMessage claiming raft id 3       answer: {answer:?}");

    // A stranger (not in the membership) is refused before any frame.
    let stranger = endpoint(SecretKey::generate()).await?;
    let refused = request(
        &stranger,
        &b,
        WireMessage::Heartbeat(Heartbeat { sequence: 1 }),
    )
    .await;
    println!(
        "stranger -> B                                 refused: {}",
        refused
            .err()
            .map_or("NO (bug!)".to_string(), |e| e.to_string())
    );

    router.shutdown().await?;
    a.close().await;
    stranger.close().await;
    Ok(())
}
