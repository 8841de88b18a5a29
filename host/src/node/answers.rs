//! Fewer answers for the same news. A follower answers every append it
//! steps; when one persisted batch holds several answers to the same
//! leader in a row, the last says everything the earlier ones said (its
//! index and commit are at least theirs, in the same term), so only it
//! needs to travel. Each answer dropped is one message fewer to encode,
//! send, decode and step on the leader.

use raft::prelude::{Message, MessageType};

/// What a successful append answer tells the leader.
#[derive(Clone, Copy, PartialEq)]
struct Acknowledgement {
    term: u64,
    index: u64,
    commit: u64,
}

fn acknowledgement(message: &Message) -> Option<Acknowledgement> {
    (message.get_msg_type() == MessageType::MsgAppendResponse && !message.reject).then_some(
        Acknowledgement {
            term: message.term,
            index: message.index,
            commit: message.commit,
        },
    )
}

/// Drop each successful append answer whose next message to the same
/// peer is a successful append answer of the same term that acknowledges
/// at least as much. Rejections, and every other message, stay, in order.
pub(crate) fn drop_superseded_append_answers(messages: &mut Vec<Message>) {
    if messages.len() < 2 {
        return;
    }
    // Walking backwards: per peer, what the next message to it says (if it
    // is an acknowledgement). Clusters are small; a Vec beats a map here.
    let mut next_to: Vec<(u64, Option<Acknowledgement>)> = Vec::new();
    let mut keep = vec![true; messages.len()];
    for (position, message) in messages.iter().enumerate().rev() {
        let this = acknowledgement(message);
        let slot = match next_to.iter().position(|(to, _)| *to == message.to) {
            Some(slot) => slot,
            None => {
                next_to.push((message.to, None));
                next_to.len() - 1
            }
        };
        if let (Some(this), Some(next)) = (this, next_to[slot].1)
            && next.term == this.term
            && next.index >= this.index
            && next.commit >= this.commit
        {
            keep[position] = false;
            continue;
        }
        next_to[slot].1 = this;
    }
    let mut keep = keep.into_iter();
    messages.retain(|_| keep.next().unwrap_or(true));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(to: u64, term: u64, index: u64, commit: u64, reject: bool) -> Message {
        let mut message = Message::default();
        message.set_msg_type(MessageType::MsgAppendResponse);
        message.to = to;
        message.term = term;
        message.index = index;
        message.commit = commit;
        message.reject = reject;
        message
    }

    fn heartbeat_answer(to: u64) -> Message {
        let mut message = Message::default();
        message.set_msg_type(MessageType::MsgHeartbeatResponse);
        message.to = to;
        message
    }

    fn summary(messages: &[Message]) -> Vec<(u64, u64, bool)> {
        messages
            .iter()
            .map(|m| {
                (
                    m.to,
                    m.index,
                    m.get_msg_type() == MessageType::MsgAppendResponse,
                )
            })
            .collect()
    }

    #[test]
    fn a_run_of_acknowledgements_to_one_leader_keeps_only_the_last() {
        let mut messages = vec![
            answer(1, 3, 10, 8, false),
            answer(1, 3, 12, 9, false),
            answer(1, 3, 15, 12, false),
        ];
        drop_superseded_append_answers(&mut messages);
        assert_eq!(summary(&messages), vec![(1, 15, true)]);
        assert_eq!(messages[0].commit, 12);
    }

    #[test]
    fn rejections_other_messages_terms_and_lower_indexes_break_a_run() {
        let mut messages = vec![
            answer(1, 3, 10, 8, false),
            answer(1, 3, 9, 8, true), // a rejection stays, and so does what it follows
            answer(1, 3, 11, 8, false),
            heartbeat_answer(1),
            answer(1, 3, 12, 8, false),
            answer(1, 4, 13, 8, false), // a new term: the older answer stays
            answer(1, 4, 12, 8, false), // acknowledges less than the one before
        ];
        let before = summary(&messages);
        drop_superseded_append_answers(&mut messages);
        assert_eq!(summary(&messages), before);
    }

    #[test]
    fn answers_to_different_peers_are_judged_apart() {
        let mut messages = vec![
            answer(1, 3, 10, 8, false),
            answer(2, 3, 10, 8, false),
            answer(1, 3, 11, 9, false),
            answer(2, 3, 9, 8, false),
        ];
        drop_superseded_append_answers(&mut messages);
        assert_eq!(
            summary(&messages),
            vec![(2, 10, true), (1, 11, true), (2, 9, true)]
        );
    }

    #[test]
    fn a_later_answer_with_a_lower_commit_does_not_replace_an_earlier_one() {
        let mut messages = vec![answer(1, 3, 10, 9, false), answer(1, 3, 11, 8, false)];
        drop_superseded_append_answers(&mut messages);
        assert_eq!(messages.len(), 2);
    }
}
