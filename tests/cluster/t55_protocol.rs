//! The iroh-raft/0 protocol against hostile peers, over real iroh endpoints
//! on loopback: non-members, forged Raft ids, malformed, oversized,
//! truncated and unexpected frames. Each gets an Error answer or a closed
//! stream, never a panic, nothing reaches Raft, and the handler keeps
//! serving.

use iroh_raft::limits::{
    DELIVERY_ANSWER_EVERY_FRAMES, MAX_FORWARD_BATCH_PROPOSALS, MAX_FRAME_BYTES,
};
use std::collections::BTreeMap;
use std::time::Duration;

use iroh::endpoint::presets;
use iroh::protocol::Router;
use iroh::{Endpoint, RelayMode, SecretKey};
use iroh_raft::node::{Applied, ClientError, ForwardId, ForwardTag, NodeInbox, NodeMsg};
use iroh_raft::transport::codec::{encode, encode_frame, read_frame, write_frame};
use iroh_raft::transport::message::{
    ErrorCode, ForwardedProposal, Heartbeat, RaftBatch, Request, Response, WireMessage,
};
use iroh_raft::transport::{
    AllowlistHook, PeerAddr, PeerDirectory, RAFT_ALPN, RaftProtocolHandler,
};
use protobuf::Message as _;
use raft::prelude::{Message, MessageType};
use tokio::sync::mpsc;

const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

async fn endpoint(directory: Option<PeerDirectory>) -> Endpoint {
    let mut builder = Endpoint::builder(presets::Minimal)
        .secret_key(SecretKey::generate())
        .alpns(vec![RAFT_ALPN.to_vec()])
        .relay_mode(RelayMode::Disabled)
        .clear_ip_transports()
        .bind_addr("127.0.0.1:0")
        .expect("addr")
        .clear_relay_transports();
    if let Some(directory) = directory {
        builder = builder.hooks(AllowlistHook::new(directory));
    }
    builder.bind().await.expect("bind")
}

fn addr(endpoint: &Endpoint) -> PeerAddr {
    PeerAddr::new(endpoint.id(), endpoint.bound_sockets())
}

/// A serving node (raft id 2) with the hook installed, a member peer (raft
/// id 1) and the serving node's Raft inbox.
struct Fixture {
    server: Endpoint,
    member: Endpoint,
    inbox: mpsc::Receiver<NodeMsg>,
    _router: Router,
}

async fn fixture() -> Fixture {
    let directory = PeerDirectory::new();
    let server = endpoint(Some(directory.clone())).await;
    let member = endpoint(None).await;
    let members: BTreeMap<u64, PeerAddr> = [(1, addr(&member)), (2, addr(&server))].into();
    directory.set_members(&members);
    let (tx, inbox) = mpsc::channel(64);
    let handler = RaftProtocolHandler::with_directory(2, NodeInbox::from_sender(tx), directory);
    let router = Router::builder(server.clone())
        .accept(RAFT_ALPN, handler)
        .spawn();
    Fixture {
        server,
        member,
        inbox,
        _router: router,
    }
}

impl Fixture {
    async fn streams(
        &self,
        from: &Endpoint,
    ) -> (iroh::endpoint::SendStream, iroh::endpoint::RecvStream) {
        let target = addr(&self.server).endpoint_addr().expect("addr");
        let connection = from.connect(target, RAFT_ALPN).await.expect("connect");
        connection.open_bi().await.expect("open stream")
    }

    /// Send raw bytes on a fresh stream; return the answer frame, if any.
    async fn raw(&self, bytes: &[u8], finish: bool) -> Option<WireMessage> {
        let (mut send, mut recv) = self.streams(&self.member).await;
        send.write_all(bytes).await.expect("write");
        if finish {
            send.finish().expect("finish");
        }
        tokio::time::timeout(ANSWER_TIMEOUT, read_frame(&mut recv, MAX_FRAME_BYTES))
            .await
            .expect("the server answers or closes in time")
            .ok()
            .flatten()
    }

    async fn request(&self, frame: &WireMessage) -> Option<WireMessage> {
        let (mut send, mut recv) = self.streams(&self.member).await;
        write_frame(&mut send, frame).await.expect("write");
        tokio::time::timeout(ANSWER_TIMEOUT, read_frame(&mut recv, MAX_FRAME_BYTES))
            .await
            .expect("answer in time")
            .expect("decodable answer")
    }

    /// The handler still serves a well-formed request.
    async fn assert_still_serving(&self) {
        let answer = self
            .request(&WireMessage::Heartbeat(Heartbeat { sequence: 7 }))
            .await;
        assert_eq!(
            answer,
            Some(WireMessage::Heartbeat(Heartbeat { sequence: 7 }))
        );
    }

    fn assert_nothing_reached_raft(&mut self) {
        assert!(self.inbox.try_recv().is_err(), "a message reached Raft");
    }
}

fn raft_frame(from: u64, to: u64) -> WireMessage {
    let mut message = Message::default();
    message.set_msg_type(MessageType::MsgHeartbeat);
    message.from = from;
    message.to = to;
    message.term = 1;
    WireMessage::RaftMessage(RaftBatch {
        messages: vec![message.write_to_bytes().expect("encode")],
    })
}

fn error_code(answer: Option<WireMessage>) -> Option<ErrorCode> {
    match answer {
        Some(WireMessage::Error(frame)) => Some(frame.code),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t55_members_deliver_and_non_members_are_refused_before_any_frame() {
    let mut fx = fixture().await;
    let answer = fx.request(&raft_frame(1, 2)).await;
    assert_eq!(
        answer,
        Some(WireMessage::Response(Response::Delivered { count: 1 }))
    );
    match fx.inbox.try_recv() {
        Ok(NodeMsg::Raft(message)) => assert_eq!(message.from, 1),
        other => panic!("expected the raft message, got {other:?}"),
    }

    let stranger = endpoint(None).await;
    let target = addr(&fx.server).endpoint_addr().expect("addr");
    let refused = async {
        let connection = stranger.connect(target, RAFT_ALPN).await?;
        let (mut send, mut recv) = connection.open_bi().await?;
        write_frame(&mut send, &raft_frame(1, 2)).await?;
        let answer = read_frame(&mut recv, MAX_FRAME_BYTES).await?;
        anyhow::Ok(answer)
    }
    .await;
    assert!(
        !matches!(refused, Ok(Some(_))),
        "a non-member got an answer: {refused:?}"
    );
    fx.assert_nothing_reached_raft();
    fx.assert_still_serving().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t55_forged_raft_ids_are_refused() {
    let mut fx = fixture().await;
    // Claims to be node 3 on node 1's connection.
    assert_eq!(
        error_code(fx.request(&raft_frame(3, 2)).await),
        Some(ErrorCode::WrongSender)
    );
    // Addressed to someone else.
    assert_eq!(
        error_code(fx.request(&raft_frame(1, 9)).await),
        Some(ErrorCode::WrongSender)
    );
    // One bad message poisons its whole batch: nothing is delivered.
    let (WireMessage::RaftMessage(good), WireMessage::RaftMessage(bad)) =
        (raft_frame(1, 2), raft_frame(3, 2))
    else {
        unreachable!()
    };
    let mixed = WireMessage::RaftMessage(RaftBatch {
        messages: [good.messages, bad.messages].concat(),
    });
    assert_eq!(
        error_code(fx.request(&mixed).await),
        Some(ErrorCode::WrongSender)
    );
    fx.assert_nothing_reached_raft();
    fx.assert_still_serving().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t55_raft_frames_are_answered_cumulatively_and_in_order() {
    let mut fx = fixture().await;
    let (mut send, mut recv) = fx.streams(&fx.member).await;
    let next_answer = async |recv: &mut iroh::endpoint::RecvStream| {
        tokio::time::timeout(ANSWER_TIMEOUT, read_frame(recv, MAX_FRAME_BYTES))
            .await
            .expect("an answer in time")
            .expect("a decodable answer")
    };
    // As many frames as the receiver answers at once, in one write: one
    // answer covers them all.
    let every = DELIVERY_ANSWER_EVERY_FRAMES as usize;
    let frames: Vec<u8> = (0..every)
        .flat_map(|_| encode_frame(&raft_frame(1, 2)).expect("encode"))
        .collect();
    send.write_all(&frames).await.expect("write");
    assert_eq!(
        next_answer(&mut recv).await,
        Some(WireMessage::Response(Response::Delivered {
            count: DELIVERY_ANSWER_EVERY_FRAMES
        }))
    );
    for _ in 0..every {
        assert!(
            matches!(fx.inbox.try_recv(), Ok(NodeMsg::Raft(_))),
            "each answered frame reached Raft"
        );
    }
    // A refused frame is answered in its place, after the frames before
    // it, and anything else waits for the frames owed before it.
    let mixed: Vec<u8> = [
        raft_frame(1, 2),
        raft_frame(3, 2),
        raft_frame(1, 2),
        WireMessage::Heartbeat(Heartbeat { sequence: 9 }),
    ]
    .iter()
    .flat_map(|frame| encode_frame(frame).expect("encode"))
    .collect();
    send.write_all(&mixed).await.expect("write");
    assert_eq!(
        next_answer(&mut recv).await,
        Some(WireMessage::Response(Response::Delivered { count: 1 }))
    );
    assert!(matches!(
        next_answer(&mut recv).await,
        Some(WireMessage::Error(frame)) if frame.code == ErrorCode::WrongSender
    ));
    assert_eq!(
        next_answer(&mut recv).await,
        Some(WireMessage::Response(Response::Delivered { count: 1 }))
    );
    assert_eq!(
        next_answer(&mut recv).await,
        Some(WireMessage::Heartbeat(Heartbeat { sequence: 9 }))
    );
    assert!(matches!(fx.inbox.try_recv(), Ok(NodeMsg::Raft(_))));
    assert!(matches!(fx.inbox.try_recv(), Ok(NodeMsg::Raft(_))));
    fx.assert_nothing_reached_raft();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t55_malformed_oversized_truncated_and_unexpected_frames() {
    let mut fx = fixture().await;

    // Garbage payload with an honest length.
    let mut garbage = 8u32.to_be_bytes().to_vec();
    garbage.extend_from_slice(&[0xff; 8]);
    assert_eq!(
        error_code(fx.raw(&garbage, false).await),
        Some(ErrorCode::Malformed)
    );

    // A length prefix far over the limit: refused before allocating.
    let huge = u32::MAX.to_be_bytes();
    assert_eq!(
        error_code(fx.raw(&huge, false).await),
        Some(ErrorCode::TooLarge)
    );
    let just_over = ((MAX_FRAME_BYTES + 1) as u32).to_be_bytes();
    assert_eq!(
        error_code(fx.raw(&just_over, false).await),
        Some(ErrorCode::TooLarge)
    );

    // A stream that ends inside a frame.
    let mut truncated = 100u32.to_be_bytes().to_vec();
    truncated.extend_from_slice(&[1; 10]);
    let answer = fx.raw(&truncated, true).await;
    assert!(
        matches!(answer, None | Some(WireMessage::Error(_))),
        "{answer:?}"
    );

    // An unknown message type (enum variant index 99).
    let mut unknown = 1u32.to_be_bytes().to_vec();
    unknown.push(99);
    assert_eq!(
        error_code(fx.raw(&unknown, false).await),
        Some(ErrorCode::Malformed)
    );

    // A raft payload that is not protobuf.
    let bad_raft = WireMessage::RaftMessage(RaftBatch {
        messages: vec![vec![0xff; 16]],
    });
    assert_eq!(
        error_code(fx.request(&bad_raft).await),
        Some(ErrorCode::Malformed)
    );

    // An answer sent as if it were a request.
    let backwards = WireMessage::Response(Response::Delivered { count: 1 });
    assert_eq!(
        error_code(fx.request(&backwards).await),
        Some(ErrorCode::UnexpectedFrame)
    );

    // Sanity: the encoder refuses to build an oversized frame at all.
    let oversized = WireMessage::RaftMessage(RaftBatch {
        messages: vec![vec![0; MAX_FRAME_BYTES]],
    });
    assert!(encode(&oversized).is_err());

    fx.assert_nothing_reached_raft();
    fx.assert_still_serving().await;
}

fn forwarded(seq: u64, command: &str) -> ForwardedProposal {
    ForwardedProposal {
        command: command.as_bytes().to_vec(),
        tag: ForwardTag {
            id: ForwardId {
                origin: 1,
                incarnation: 42,
                seq,
            },
            term: 3,
        },
    }
}

/// A batch of forwarded proposals is handed to the node whole, then
/// answered with one frame per proposal in the batch's order (whatever
/// order the node settles them in); an empty or oversized batch is refused
/// with one error frame before anything reaches the node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t55_a_forwarded_batch_is_answered_per_proposal_in_order_or_refused_whole() {
    let mut fx = fixture().await;

    let empty = WireMessage::Request(Request::ProposeForwardedBatch {
        proposals: Vec::new(),
    });
    assert_eq!(
        error_code(fx.request(&empty).await),
        Some(ErrorCode::Malformed)
    );
    let oversized = WireMessage::Request(Request::ProposeForwardedBatch {
        proposals: (0..=MAX_FORWARD_BATCH_PROPOSALS as u64)
            .map(|seq| forwarded(seq, "add 1"))
            .collect(),
    });
    assert_eq!(
        error_code(fx.request(&oversized).await),
        Some(ErrorCode::TooLarge)
    );
    fx.assert_nothing_reached_raft();

    let (mut send, mut recv) = fx.streams(&fx.member).await;
    let batch = WireMessage::Request(Request::ProposeForwardedBatch {
        proposals: vec![
            forwarded(1, "add 1"),
            forwarded(2, "add 2"),
            forwarded(3, "add 3"),
        ],
    });
    write_frame(&mut send, &batch).await.expect("write");
    // The node sees all three before any is answered, and settles them
    // last first.
    let mut taken = Vec::new();
    while taken.len() < 3 {
        let message = tokio::time::timeout(ANSWER_TIMEOUT, fx.inbox.recv())
            .await
            .expect("the batch reaches the node")
            .expect("inbox open");
        match message {
            NodeMsg::ProposeForwarded {
                command,
                tag,
                reply,
            } => taken.push((command, tag.id.seq, reply)),
            other => panic!("unexpected {other:?}"),
        }
    }
    let commands: Vec<_> = taken.iter().map(|(c, seq, _)| (c.clone(), *seq)).collect();
    assert_eq!(
        commands,
        vec![
            (b"add 1".to_vec(), 1),
            (b"add 2".to_vec(), 2),
            (b"add 3".to_vec(), 3)
        ]
    );
    for (index, (_, seq, reply)) in taken.into_iter().enumerate().rev() {
        let answer = if seq == 2 {
            Err(ClientError::NotLeader {
                leader_hint: Some(9),
            })
        } else {
            Ok(Applied {
                index: 10 + index as u64,
                term: 3,
                result: Ok(seq.to_string().into_bytes()),
                fuel_used: 5,
            })
        };
        reply.send(answer).expect("the handler waits");
    }
    let mut answers = Vec::new();
    for _ in 0..3 {
        let answer = tokio::time::timeout(ANSWER_TIMEOUT, read_frame(&mut recv, MAX_FRAME_BYTES))
            .await
            .expect("answer in time")
            .expect("decodable answer")
            .expect("an answer per proposal");
        answers.push(answer);
    }
    assert_eq!(
        answers,
        vec![
            WireMessage::Response(Response::Applied {
                index: 10,
                term: 3,
                result: Ok(b"1".to_vec()),
                fuel_used: 5
            }),
            WireMessage::Refused(ClientError::NotLeader {
                leader_hint: Some(9)
            }),
            WireMessage::Response(Response::Applied {
                index: 12,
                term: 3,
                result: Ok(b"3".to_vec()),
                fuel_used: 5
            }),
        ]
    );
    fx.assert_still_serving().await;
}
