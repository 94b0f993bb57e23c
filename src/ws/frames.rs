//! WebSocket frame shapes: what a client sends (parsed strictly, one error
//! per bad frame, the connection stays) and what the server sends.

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::api::dto::{self, WireMessage};
use crate::api::error::{ApiError, ErrorBody};
use crate::api::receipt::ReceiptCodec;
use crate::hub::Delivery;

/// Longest subscription id.
pub const MAX_SUB_LEN: usize = 128;
/// Default and largest prefetch.
pub const DEFAULT_PREFETCH: u32 = 10;
pub const MAX_PREFETCH: u32 = 1000;

/// A parsed client frame with its `ref` (echoed in the answer).
#[derive(Debug)]
pub struct ClientFrame {
    pub reference: Option<Value>,
    pub op: Op,
}

/// The operations a client may ask for.
#[derive(Debug)]
pub enum Op {
    Subscribe(Subscribe),
    Unsubscribe {
        sub: String,
    },
    Ack {
        receipts: Vec<String>,
    },
    Nack {
        receipts: Vec<String>,
        delay_seconds: Option<u32>,
    },
    Publish {
        topic: Option<String>,
        queue: Option<String>,
        message: WireMessage,
    },
    Auth {
        token: String,
    },
}

/// `subscribe` to a queue or a topic.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Subscribe {
    pub sub: String,
    #[serde(default)]
    pub queue: Option<String>,
    #[serde(default)]
    pub topic: Option<String>,
    #[serde(default)]
    pub filter: Option<Value>,
    #[serde(default)]
    pub resume: Option<String>,
    #[serde(default)]
    pub prefetch: Option<u32>,
    #[serde(default)]
    pub auto_ack: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UnsubscribeBody {
    sub: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReceiptsBody {
    receipts: Vec<String>,
    #[serde(default)]
    delay_seconds: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AuthBody {
    token: String,
}

/// Why a frame was refused, with the `ref` when it could be read.
#[derive(Debug)]
pub struct FrameError {
    pub reference: Option<Value>,
    pub error: ApiError,
}

fn from_map<T: serde::de::DeserializeOwned>(map: Map<String, Value>) -> Result<T, ApiError> {
    serde_json::from_value(Value::Object(map))
        .map_err(|e| ApiError::invalid_request(format!("invalid frame: {e}")))
}

/// The shape of `ack` and `nack` frames, read straight into typed fields:
/// a client acking every message sends one per message, and going through
/// a JSON map first cost 11 % of the server's CPU in a fan-out run. Anything
/// else, wrong ones included, takes the general path, which words the
/// errors.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SettleFrame<'a> {
    #[serde(borrow)]
    op: std::borrow::Cow<'a, str>,
    /// Any JSON value, `null` too, is echoed as it came.
    #[serde(rename = "ref", default, deserialize_with = "present")]
    reference: Option<Value>,
    receipts: Vec<String>,
    #[serde(default)]
    delay_seconds: Option<u32>,
}

fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

/// `Some` for a well-formed `ack` or `nack` frame.
fn parse_settle(text: &str) -> Option<ClientFrame> {
    let f: SettleFrame = serde_json::from_str(text).ok()?;
    let op = match (&*f.op, f.delay_seconds) {
        ("ack", None) => Op::Ack {
            receipts: f.receipts,
        },
        ("nack", d) if d.is_none_or(|d| d <= crate::model::MAX_VISIBILITY_SECONDS) => Op::Nack {
            receipts: f.receipts,
            delay_seconds: d,
        },
        _ => return None,
    };
    Some(ClientFrame {
        reference: f.reference,
        op,
    })
}

/// Parses one text frame.
pub fn parse(text: &str) -> Result<ClientFrame, FrameError> {
    if let Some(f) = parse_settle(text) {
        return Ok(f);
    }
    let mut map: Map<String, Value> = serde_json::from_str(text).map_err(|e| FrameError {
        reference: None,
        error: ApiError::invalid_request(format!("frame is not a JSON object: {e}")),
    })?;
    let reference = map.remove("ref");
    let fail = |error: ApiError| FrameError {
        reference: reference.clone(),
        error,
    };
    let op = match map.remove("op") {
        Some(Value::String(s)) => s,
        Some(_) => return Err(fail(ApiError::invalid_request("\"op\" must be a string"))),
        None => return Err(fail(ApiError::invalid_request("a frame needs an \"op\""))),
    };
    let op = match op.as_str() {
        "subscribe" => {
            let s: Subscribe = from_map(map).map_err(fail)?;
            if s.sub.is_empty() || s.sub.chars().count() > MAX_SUB_LEN {
                return Err(fail(ApiError::invalid_request(format!(
                    "\"sub\" must be 1 to {MAX_SUB_LEN} characters"
                ))));
            }
            match (&s.queue, &s.topic) {
                (Some(_), None) | (None, Some(_)) => {}
                _ => {
                    return Err(fail(ApiError::invalid_request(
                        "subscribe takes exactly one of \"queue\" or \"topic\"",
                    )))
                }
            }
            if s.queue.is_some() && (s.filter.is_some() || s.resume.is_some()) {
                return Err(fail(ApiError::invalid_request(
                    "\"filter\" and \"resume\" are for topic subscriptions",
                )));
            }
            if let Some(p) = s.prefetch {
                if !(1..=MAX_PREFETCH).contains(&p) {
                    return Err(fail(ApiError::invalid_request(format!(
                        "prefetch is {p}; it must be between 1 and {MAX_PREFETCH}"
                    ))));
                }
            }
            Op::Subscribe(s)
        }
        "unsubscribe" => {
            let b: UnsubscribeBody = from_map(map).map_err(fail)?;
            Op::Unsubscribe { sub: b.sub }
        }
        "ack" => {
            let b: ReceiptsBody = from_map(map).map_err(fail)?;
            if b.delay_seconds.is_some() {
                return Err(fail(ApiError::invalid_request(
                    "ack takes only \"receipts\"",
                )));
            }
            Op::Ack {
                receipts: b.receipts,
            }
        }
        "nack" => {
            let b: ReceiptsBody = from_map(map).map_err(fail)?;
            if let Some(d) = b.delay_seconds {
                let max = crate::model::MAX_VISIBILITY_SECONDS;
                if d > max {
                    return Err(fail(ApiError::invalid_request(format!(
                        "delay_seconds is {d}; it must be between 0 and {max}"
                    ))));
                }
            }
            Op::Nack {
                receipts: b.receipts,
                delay_seconds: b.delay_seconds,
            }
        }
        "publish" => {
            let topic = take_string(&mut map, "topic").map_err(fail)?;
            let queue = take_string(&mut map, "queue").map_err(fail)?;
            if topic.is_some() == queue.is_some() {
                return Err(fail(ApiError::invalid_request(
                    "publish takes exactly one of \"topic\" or \"queue\"",
                )));
            }
            let message: WireMessage = from_map(map).map_err(fail)?;
            Op::Publish {
                topic,
                queue,
                message,
            }
        }
        "auth" => {
            let b: AuthBody = from_map(map).map_err(fail)?;
            Op::Auth { token: b.token }
        }
        other => {
            return Err(fail(ApiError::invalid_request(format!(
                "unknown op {other:?}"
            ))))
        }
    };
    Ok(ClientFrame { reference, op })
}

fn take_string(map: &mut Map<String, Value>, key: &str) -> Result<Option<String>, ApiError> {
    match map.remove(key) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(ApiError::invalid_request(format!(
            "\"{key}\" must be a string"
        ))),
    }
}

/// `{"op": "ok", "ref": .., ...extra}`.
pub fn ok(reference: Option<Value>, extra: Value) -> String {
    let mut m = match extra {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    m.insert("op".into(), Value::String("ok".into()));
    if let Some(r) = reference {
        m.insert("ref".into(), r);
    }
    Value::Object(m).to_string()
}

/// The `ok` answer to a settle frame, written from its receipts as they
/// came, whether each decoded, and the outcomes of those that did (taken
/// from `results` in turn, see [`dto::receipt_outcomes`]):
/// `{"op": "ok", "ref": .., "results": [...]}`,
/// the same bytes serde writes for [`crate::api::dto::receipt_results`],
/// without building them.
pub fn settle_answer(
    reference: Option<&Value>,
    receipts: &[String],
    decoded: &[Option<crate::queue::Receipt>],
    results: &mut impl Iterator<Item = Result<(), crate::queue::ReceiptError>>,
) -> String {
    let mut out =
        String::with_capacity(32 + receipts.len() * (crate::api::receipt::RECEIPT_CHARS + 24));
    out.push_str("{\"op\":\"ok\"");
    if let Some(r) = reference {
        out.push_str(",\"ref\":");
        out.push_str(&r.to_string());
    }
    out.push_str(",\"results\":[");
    for (i, (text, r)) in dto::receipt_outcomes(receipts, decoded, results).enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str("{\"receipt\":");
        dto::push_json_str(&mut out, text);
        match r {
            Ok(()) => out.push_str(",\"ok\":true}"),
            Err(e) => {
                let body = crate::api::error::receipt_error_body(e);
                out.push_str(",\"error\":{\"code\":");
                dto::push_json_str(&mut out, body.code);
                out.push_str(",\"message\":");
                dto::push_json_str(&mut out, &body.message);
                out.push_str("}}");
            }
        }
    }
    out.push_str("]}");
    out
}

/// `{"op": "error", "ref": .., "error": {"code", "message"}}`.
pub fn error(reference: Option<Value>, e: &ErrorBody) -> String {
    let mut m = Map::new();
    m.insert("op".into(), Value::String("error".into()));
    if let Some(r) = reference {
        m.insert("ref".into(), r);
    }
    m.insert(
        "error".into(),
        serde_json::json!({"code": e.code, "message": e.message}),
    );
    Value::Object(m).to_string()
}

/// `{"op": "message", "sub": .., ...received message fields}`.
pub fn message(sub: &str, d: &Delivery, codec: &ReceiptCodec) -> String {
    let mut out = String::with_capacity(32 + sub.len() + dto::wire_size_hint(d));
    out.push_str("{\"op\":\"message\",\"sub\":");
    dto::push_json_str(&mut out, sub);
    out.push(',');
    dto::write_message_members(&mut out, d, codec);
    out.push('}');
    out
}

/// `{"op": "end", "sub": ..}`.
pub fn end(sub: &str, reason: &str) -> String {
    serde_json::json!({"op": "end", "sub": sub, "reason": reason}).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Serialize;

    /// What the answer to a settle frame looked like when serde wrote it.
    fn ok_results(reference: Option<Value>, results: &[crate::api::dto::ReceiptOut]) -> String {
        #[derive(Serialize)]
        struct OkResults<'a> {
            op: &'static str,
            #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
            reference: Option<Value>,
            results: &'a [crate::api::dto::ReceiptOut],
        }
        serde_json::to_string(&OkResults {
            op: "ok",
            reference,
            results,
        })
        .expect("serializes")
    }

    #[test]
    fn settle_answers_are_ok_results_of_receipt_results() {
        use crate::queue::{Receipt, ReceiptError};
        let r = |seq| {
            Some(Receipt {
                queue_uid: 1,
                seq,
                lease: 1,
            })
        };
        let receipts: Vec<String> = ["a", "b\"c\\d\u{1}é", "d", "e"].map(String::from).to_vec();
        let decoded = [r(1), None, r(2), r(3)];
        let results = vec![Ok(()), Err(ReceiptError::Stale), Ok(())];
        for reference in [
            None,
            Some(serde_json::json!("x")),
            Some(serde_json::json!(null)),
            Some(serde_json::json!({"a": [1, "b"]})),
        ] {
            let want = ok_results(
                reference.clone(),
                &crate::api::dto::receipt_results(&receipts, &decoded, results.clone()),
            );
            let got = settle_answer(
                reference.as_ref(),
                &receipts,
                &decoded,
                &mut results.clone().into_iter(),
            );
            assert_eq!(got, want);
        }
    }

    /// The typed path for acks and nacks reads what the general path reads.
    #[test]
    fn settle_frames_read_the_same_on_both_paths() {
        let general = |t: &str| {
            let mut map: Map<String, Value> = serde_json::from_str(t).expect("object");
            let reference = map.remove("ref");
            let op = map.remove("op");
            let b: ReceiptsBody = from_map(map).expect("body");
            (reference, op, b.receipts, b.delay_seconds)
        };
        for t in [
            r#"{"op":"ack","receipts":["a","b"]}"#,
            r#"{"ref":7,"op":"ack","receipts":["a"]}"#,
            r#"{"op":"ack","ref":null,"receipts":["a\"b","\u00e9"]}"#,
            r#"{"op":"ack","ref":{"x":[1,"y"]},"receipts":[]}"#,
            r#"{"op":"nack","receipts":["a"],"delay_seconds":5,"ref":"r"}"#,
            r#"{"op":"nack","receipts":["a"]}"#,
        ] {
            let fast = parse_settle(t).expect("fast path takes it");
            let (reference, op, receipts, delay) = general(t);
            assert_eq!(fast.reference, reference, "{t}");
            match fast.op {
                Op::Ack { receipts: r } => {
                    assert_eq!(op, Some(Value::String("ack".into())));
                    assert_eq!((r, None), (receipts, delay), "{t}");
                }
                Op::Nack {
                    receipts: r,
                    delay_seconds: d,
                } => {
                    assert_eq!(op, Some(Value::String("nack".into())));
                    assert_eq!((r, d), (receipts, delay), "{t}");
                }
                other => panic!("{other:?}"),
            }
        }
        // Escaped op names and duplicate keys are left to the general path.
        assert!(parse_settle(r#"{"op":"ac\u006b","receipts":["a"]}"#).is_some());
        assert!(parse_settle(r#"{"op":"ack","receipts":["a"],"receipts":["b"]}"#).is_none());
        assert!(parse_settle(r#"{"op":"publish","topic":"t","body":"x"}"#).is_none());
    }

    #[test]
    fn frames_parse_and_bad_ones_keep_their_ref() {
        assert!(matches!(
            parse(r#"{"op":"subscribe","sub":"s","queue":"q","prefetch":5,"ref":1}"#),
            Ok(ClientFrame {
                op: Op::Subscribe(_),
                ..
            })
        ));
        let e = parse(r#"{"op":"subscribe","sub":"s","queue":"q","prefetch":1001,"ref":7}"#)
            .expect_err("prefetch too large");
        assert_eq!(e.reference, Some(serde_json::json!(7)));
        assert!(parse("not json").is_err());
        assert!(parse(r#"{"op":"dance"}"#).is_err());
        assert!(parse(r#"{"op":"subscribe","sub":"s","queue":"q","topic":"t"}"#).is_err());
        assert!(parse(r#"{"op":"ack","receipts":["a"],"extra":1}"#).is_err());
        assert!(parse(r#"{"op":"ack","receipts":["a"],"delay_seconds":1}"#).is_err());
        assert!(parse(r#"{"op":"nack","receipts":["a"],"delay_seconds":43201}"#).is_err());
        assert!(parse(r#"{"op":"ack","receipts":"a"}"#).is_err());
        assert!(matches!(
            parse(r#"{"op":"publish","topic":"t","body":"x","attributes":{"a":"b"}}"#),
            Ok(ClientFrame {
                op: Op::Publish { .. },
                ..
            })
        ));
    }
}
