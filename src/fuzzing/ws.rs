//! WebSocket client frames (`src/ws/frames.rs`), and what a session does
//! with a parsed frame before it reaches the hub.

use serde_json::Value;

use crate::model::{QueueName, TopicName};
use crate::ws::frames::{self, ClientFrame, Op};

/// `ws_frame`: one text frame (binary frames are refused before parsing,
/// so input that is not UTF-8 is skipped). Parsing never panics; a refusal
/// is a client error that keeps its `ref`; the answer, `ok` or `error`, is
/// a JSON object that echoes the `ref`.
pub fn ws_frame(data: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(data) else {
        return false;
    };
    let (reference, answer, accepted) = match frames::parse(text) {
        Err(e) => {
            assert!(e.error.status.is_client_error(), "{e:?}");
            let answer = frames::error(e.reference.clone(), &e.error.body());
            (e.reference, answer, false)
        }
        Ok(ClientFrame { reference, op }) => {
            follow(op);
            let answer = frames::ok(reference.clone(), serde_json::json!({"sub": "s"}));
            (reference, answer, true)
        }
    };
    let answer: Value = serde_json::from_str(&answer).expect("an answer is JSON");
    let echoed = answer.get("ref");
    match (&reference, echoed) {
        (None, None) => {}
        (Some(sent), Some(echoed)) => assert!(super::json_close(sent, echoed), "{answer}"),
        _ => panic!("ref {reference:?} echoed as {echoed:?}"),
    }
    assert!(answer["op"].is_string());
    accepted
}

/// The checks a session makes of a parsed frame before the hub sees it.
fn follow(op: Op) {
    let codec = super::codec();
    match op {
        Op::Subscribe(s) => {
            if let Some(q) = &s.queue {
                let _ = QueueName::new(q);
            }
            if let Some(t) = &s.topic {
                let _ = TopicName::new(t);
            }
            if let Some(f) = &s.filter {
                let _ = super::filter::compiles_again(f);
            }
            if let Some(r) = &s.resume {
                if let Some(q) = codec.check_resume_token(r) {
                    assert_eq!(&codec.resume_token(q), r);
                }
            }
        }
        Op::Ack { receipts } | Op::Nack { receipts, .. } => {
            for r in &receipts {
                if let Some(d) = codec.decode(r) {
                    assert_eq!(&codec.encode(&d), r);
                }
            }
        }
        Op::Publish {
            topic,
            queue,
            message,
        } => {
            assert!(topic.is_some() != queue.is_some());
            if let Err(e) = message.into_new_message() {
                assert!(e.status.is_client_error(), "{e:?}");
            }
        }
        Op::Auth { token } => {
            let _ = super::auth::authenticate(&token);
        }
        Op::Unsubscribe { .. } => {}
    }
}
