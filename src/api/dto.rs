//! Wire types of the HTTP API (and the WebSocket frames that share them):
//! what requests look like and how answers are written. Only `api` and `ws`
//! know these shapes.

use std::collections::BTreeMap;

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::body::parse_json;
use super::error::{ApiError, ErrorBody};
use super::receipt::ReceiptCodec;
use crate::hub::Delivery;
use crate::hub::{NewMessage, QueueInfo, TopicInfo};
use crate::model::time::{format_rfc3339, parse_rfc3339, write_rfc3339};
use crate::model::{BodyEncoding, MessageId, QueueName, QueueSettings, QueueSettingsPatch};

/// A message as published or sent.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WireMessage {
    pub body: String,
    #[serde(default)]
    pub body_encoding: Option<String>,
    #[serde(default)]
    pub attributes: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub group_id: Option<String>,
    #[serde(default)]
    pub dedup_id: Option<String>,
    #[serde(default)]
    pub delay_seconds: Option<u32>,
    #[serde(default)]
    pub deliver_at: Option<String>,
    #[serde(default)]
    pub poison: Option<bool>,
}

impl WireMessage {
    /// Checks what the wire can check (encoding, base64, timestamp) and turns
    /// it into the hub's form.
    pub fn into_new_message(self) -> Result<NewMessage, ApiError> {
        let encoding = match self.body_encoding.as_deref() {
            None | Some("text") => BodyEncoding::Text,
            Some("base64") => BodyEncoding::Base64,
            Some(other) => {
                return Err(ApiError::invalid_request(format!(
                    "body_encoding is {other:?}; use \"text\" or \"base64\""
                )))
            }
        };
        let body_len = match encoding {
            BodyEncoding::Text => self.body.len(),
            BodyEncoding::Base64 => base64::engine::general_purpose::STANDARD
                .decode(self.body.as_bytes())
                .map_err(|e| ApiError::invalid_request(format!("body is not valid base64: {e}")))?
                .len(),
        };
        let deliver_at = match &self.deliver_at {
            None => None,
            Some(s) => Some(parse_rfc3339(s).ok_or_else(|| {
                ApiError::invalid_request(format!("deliver_at {s:?} is not an RFC 3339 time"))
            })?),
        };
        Ok(NewMessage {
            body: self.body,
            body_encoding: encoding,
            body_len,
            attributes: self.attributes.unwrap_or_default(),
            group_id: self.group_id,
            dedup_id: self.dedup_id,
            delay_seconds: self.delay_seconds,
            deliver_at,
            poison: self.poison.unwrap_or(false),
        })
    }
}

/// Parses a `PUT /v1/queues/{queue}` body. On top of the strict parse: the
/// dead-letter queue's name is checked first, so a bad one is `InvalidName`
/// as the contract asks of an invalid name anywhere (serde would report it as
/// `InvalidRequest`); and `dead_letter` and `retry_backoff` must be objects
/// (or `null`), since serde would take an array as their fields in order.
pub fn parse_queue_settings(bytes: &[u8]) -> Result<QueueSettingsPatch, ApiError> {
    let v: serde_json::Value = parse_json(bytes)?;
    for key in ["dead_letter", "retry_backoff"] {
        match v.get(key) {
            None | Some(serde_json::Value::Null) | Some(serde_json::Value::Object(_)) => {}
            Some(_) => {
                return Err(ApiError::invalid_request(format!(
                    "{key} must be an object or null"
                )))
            }
        }
    }
    if let Some(serde_json::Value::String(q)) = v.get("dead_letter").and_then(|d| d.get("queue")) {
        QueueName::new(q)?;
    }
    serde_json::from_value(v)
        .map_err(|e| ApiError::invalid_request(format!("invalid queue settings: {e}")))
}

/// A parsed publish or send body.
pub enum PublishInput {
    /// A single message: errors answer with their own status.
    Single(WireMessage),
    /// `{"messages": [...]}`: each entry parsed alone, so one bad entry gets
    /// its own error instead of failing the batch.
    Batch(Vec<Result<WireMessage, ApiError>>),
}

/// Parses a publish or send body.
pub fn parse_publish(bytes: &[u8]) -> Result<PublishInput, ApiError> {
    let top: BTreeMap<String, &RawValue> = serde_json::from_slice(bytes)
        .map_err(|e| ApiError::invalid_request(format!("invalid JSON body: {e}")))?;
    let Some(raw) = top.get("messages") else {
        return serde_json::from_slice(bytes)
            .map(PublishInput::Single)
            .map_err(|e| ApiError::invalid_request(format!("invalid message: {e}")));
    };
    if top.len() > 1 {
        return Err(ApiError::invalid_request(
            "a batch body has only the field \"messages\"",
        ));
    }
    let entries: Vec<&RawValue> = serde_json::from_str(raw.get())
        .map_err(|e| ApiError::invalid_request(format!("messages must be an array: {e}")))?;
    Ok(PublishInput::Batch(
        entries
            .into_iter()
            .map(|r| {
                serde_json::from_str::<WireMessage>(r.get())
                    .map_err(|e| ApiError::invalid_request(format!("invalid message: {e}")))
            })
            .collect(),
    ))
}

/// One entry's outcome in a batch answer.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum EntryOut {
    Ok { id: String },
    Err { error: ErrorBody },
}

/// `{"receipts": [...]}` for ack; nack adds `delay_seconds`; visibility adds `seconds`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReceiptsBody {
    pub receipts: Vec<String>,
    #[serde(default)]
    pub delay_seconds: Option<u32>,
    #[serde(default)]
    pub seconds: Option<u32>,
}

/// Per-receipt outcome.
#[derive(Debug, Serialize)]
pub struct ReceiptOut {
    pub receipt: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ok: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorBody>,
}

/// Each receipt with its outcome, in the order given: receipts that did not
/// decode are `ReceiptInvalid`; the others take `results` in turn. Shared by
/// HTTP answers ([`receipt_results`]) and WebSocket ones
/// (`ws::frames::settle_answer`).
pub fn receipt_outcomes<'a>(
    receipts: &'a [String],
    decoded: &'a [Option<crate::queue::Receipt>],
    mut results: impl Iterator<Item = Result<(), crate::queue::ReceiptError>> + 'a,
) -> impl Iterator<Item = (&'a String, Result<(), crate::queue::ReceiptError>)> + 'a {
    use crate::queue::ReceiptError;
    receipts.iter().zip(decoded).map(move |(text, d)| {
        let r = match d {
            None => Err(ReceiptError::Invalid),
            Some(_) => results.next().unwrap_or(Err(ReceiptError::Invalid)),
        };
        (text, r)
    })
}

/// [`receipt_outcomes`] as answer entries.
pub fn receipt_results(
    receipts: &[String],
    decoded: &[Option<crate::queue::Receipt>],
    results: Vec<Result<(), crate::queue::ReceiptError>>,
) -> Vec<ReceiptOut> {
    receipt_outcomes(receipts, decoded, results.into_iter())
        .map(|(text, r)| match r {
            Ok(()) => ReceiptOut {
                receipt: text.clone(),
                ok: Some(true),
                error: None,
            },
            Err(e) => ReceiptOut {
                receipt: text.clone(),
                ok: None,
                error: Some(super::error::receipt_error_body(e)),
            },
        })
        .collect()
}

/// `POST .../receive`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReceiveBody {
    #[serde(default)]
    pub max: Option<u32>,
    #[serde(default)]
    pub wait_seconds: Option<u32>,
    #[serde(default)]
    pub visibility_timeout_seconds: Option<u32>,
}

/// `PUT .../subscriptions/{queue}`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubscribeBody {
    #[serde(default)]
    pub filter: Option<serde_json::Value>,
}

/// `POST .../redrive`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedriveBody {
    #[serde(default)]
    pub max_per_second: Option<u32>,
}

/// A received message on the wire: writes its JSON object's members (no
/// braces, so a WebSocket frame can put `op` and `sub` first). Written by
/// hand, not by serde: this runs once per delivered copy, and the body of a
/// base64 message (and most text) needs no escaping, so it is copied as is.
/// Members: `id`, `receipt`, `body`, `body_encoding` (base64 only),
/// `attributes`, `receive_count`, `sent_at`, `first_received_at`, `group_id`
/// and `dedup_id` (FIFO only), `sequence`, `topic`, `poison`,
/// `dead_letter_source`.
pub fn write_message_members(out: &mut String, d: &Delivery, codec: &ReceiptCodec) {
    let m = &d.message;
    let mut num = itoa::Buffer::new();
    out.push_str("\"id\":\"");
    m.id.write_to(out);
    out.push_str("\",\"receipt\":\"");
    codec.encode_into(&d.receipt, out);
    out.push_str("\",\"body\":");
    push_json_str(out, &m.body);
    if m.body_encoding == BodyEncoding::Base64 {
        out.push_str(",\"body_encoding\":\"base64\"");
    }
    out.push_str(",\"attributes\":{");
    for (i, (k, v)) in m.attributes.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_json_str(out, k);
        out.push(':');
        push_json_str(out, v);
    }
    out.push_str("},\"receive_count\":");
    out.push_str(num.format(d.receive_count));
    out.push_str(",\"sent_at\":\"");
    write_rfc3339(out, m.sent_at);
    out.push_str("\",\"first_received_at\":\"");
    write_rfc3339(out, d.first_received_at);
    out.push('"');
    if let Some(g) = &d.group_id {
        out.push_str(",\"group_id\":");
        push_json_str(out, g);
        if let Some(dd) = &m.dedup_id {
            out.push_str(",\"dedup_id\":");
            push_json_str(out, dd);
        }
    }
    out.push_str(",\"sequence\":");
    out.push_str(num.format(d.seq));
    if let Some(t) = &m.topic {
        out.push_str(",\"topic\":");
        push_json_str(out, t.as_str());
    }
    out.push_str(if m.poison {
        ",\"poison\":true"
    } else {
        ",\"poison\":false"
    });
    if let Some(q) = &d.dead_letter_source {
        out.push_str(",\"dead_letter_source\":");
        push_json_str(out, q.as_str());
    }
}

/// `{"messages": [..]}`, the answer to a receive.
pub fn received_json(got: &[Delivery], codec: &ReceiptCodec) -> String {
    let mut out = String::with_capacity(16 + got.iter().map(wire_size_hint).sum::<usize>());
    out.push_str("{\"messages\":[");
    for (i, d) in got.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push('{');
        write_message_members(&mut out, d, codec);
        out.push('}');
    }
    out.push_str("]}");
    out
}

/// About how long a delivery's JSON is (to size buffers once).
pub fn wire_size_hint(d: &Delivery) -> usize {
    256 + d.message.body.len()
}

/// A JSON string literal. Strings without a quote, backslash or control
/// character (the check runs over whole words, without a branch per byte)
/// are copied as they are; the rest goes through serde_json's escaping.
pub fn push_json_str(out: &mut String, s: &str) {
    let plain = s
        .bytes()
        .fold(true, |ok, b| ok & (b >= 0x20) & (b != b'"') & (b != b'\\'));
    if plain {
        out.push('"');
        out.push_str(s);
        out.push('"');
    } else {
        // Serializing a &str to JSON cannot fail.
        out.push_str(&serde_json::to_string(s).unwrap_or_default());
    }
}

pub fn id_string(id: MessageId) -> String {
    id.to_string()
}

/// Queue describe.
pub fn queue_json(info: &QueueInfo) -> serde_json::Value {
    let s = &info.stats;
    let mut v = serde_json::json!({
        "name": info.name,
        "settings": settings_json(&info.settings),
        "stats": {
            "visible": s.visible,
            "delayed": s.delayed,
            "in_flight": s.in_flight,
            "oldest_age_seconds": s.oldest_age_ms / 1000,
            "sent": s.totals.sent,
            "received": s.totals.received,
            "acked": s.totals.acked,
            "dead_lettered": s.totals.dead_lettered,
            "expired": s.totals.expired,
            "purged": s.totals.purged,
            "deduplicated": s.totals.deduplicated,
        },
        "temporary": info.temporary,
        "dead_letter_sources": info.dead_letter_sources,
        "subscribed_to": info.subscribed_to,
    });
    if let Some(r) = &info.redrive {
        v["redrive"] = serde_json::json!({
            "task_id": r.task_id,
            "state": if r.running { "running" } else { "done" },
            "total": r.total,
            "moved": r.moved,
            "started_at": format_rfc3339(r.started_at),
            "max_per_second": r.max_per_second,
        });
    }
    v
}

pub fn settings_json(s: &QueueSettings) -> serde_json::Value {
    serde_json::to_value(s).unwrap_or(serde_json::Value::Null)
}

/// Topic describe.
pub fn topic_json(info: &TopicInfo) -> serde_json::Value {
    let subs: Vec<_> = info
        .subscriptions
        .iter()
        .map(|s| serde_json::json!({"queue": s.queue, "filter": s.filter_json.as_deref()}))
        .collect();
    serde_json::json!({
        "name": info.name,
        "settings": info.settings,
        "subscriptions": subs,
        "stats": {
            "published": info.stats.published,
            "delivered": info.stats.delivered,
            "dropped": info.stats.dropped,
            "deduplicated": info.stats.deduplicated,
        },
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::model::{MessageData, TopicName};
    use crate::queue::Receipt;

    fn delivery(
        body: &str,
        encoding: BodyEncoding,
        attrs: &[(&str, &str)],
        fifo: bool,
    ) -> Delivery {
        Delivery {
            receipt: Receipt {
                queue_uid: 7,
                seq: 42,
                lease: 3,
            },
            message: Arc::new(MessageData {
                id: MessageId::generate(1_764_000_000_123),
                body: body.to_string(),
                body_encoding: encoding,
                attributes: attrs
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                group_id: fifo.then(|| Arc::from("g\"1")),
                dedup_id: fifo.then(|| Arc::from("d\\1")),
                topic: Some(TopicName::new("orders").expect("valid")),
                poison: false,
                sent_at: 1_764_000_000_123,
                size: body.len(),
                visible_at: None,
                loc: Default::default(),
                copies: 1,
            }),
            seq: 42,
            receive_count: 3,
            first_received_at: 1_764_000_001_000,
            group_id: fifo.then(|| Arc::from("g\"1")),
            dead_letter_source: fifo.then(|| QueueName::new("src.fifo").expect("valid")),
        }
    }

    /// What serde_json makes of the same members: the reference.
    fn expected(d: &Delivery, codec: &ReceiptCodec) -> serde_json::Value {
        let m = &d.message;
        let mut v = serde_json::json!({
            "id": m.id.to_string(),
            "receipt": codec.encode(&d.receipt),
            "body": m.body,
            "attributes": m.attributes,
            "receive_count": d.receive_count,
            "sent_at": format_rfc3339(m.sent_at),
            "first_received_at": format_rfc3339(d.first_received_at),
            "sequence": d.seq,
            "topic": m.topic.as_ref().map(|t| t.as_str()),
            "poison": m.poison,
        });
        if m.body_encoding == BodyEncoding::Base64 {
            v["body_encoding"] = "base64".into();
        }
        if let Some(g) = &d.group_id {
            v["group_id"] = g.as_ref().into();
            v["dedup_id"] = m.dedup_id.as_deref().into();
        }
        if let Some(q) = &d.dead_letter_source {
            v["dead_letter_source"] = q.as_str().into();
        }
        v
    }

    #[test]
    fn hand_written_message_json_reads_back_as_serde_writes_it() {
        let codec = ReceiptCodec::random();
        let cases = [
            delivery("aGVsbG8=", BodyEncoding::Base64, &[], false),
            delivery("plain text", BodyEncoding::Text, &[("k", "v")], false),
            delivery(
                "quote \" backslash \\ newline \n tab \t nul \u{0} bell \u{7} del \u{7f} é 日本 🎉",
                BodyEncoding::Text,
                &[("a\"b", "c\\d"), ("ctl\u{1f}", "\u{2028}x"), ("", "")],
                true,
            ),
        ];
        let got = &cases[..];
        let text = received_json(got, &codec);
        let answer: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
        let shown = answer["messages"].as_array().expect("a list");
        assert_eq!(shown.len(), cases.len());
        for (d, s) in cases.iter().zip(shown) {
            assert_eq!(s, &expected(d, &codec), "{text}");
        }
        assert_eq!(received_json(&[], &codec), r#"{"messages":[]}"#);
    }

    #[test]
    fn json_strings_escape_only_what_must_be() {
        for s in [
            "", "abc", "é", "a\"b", "a\\b", "\u{0}", "\u{1f}", " ", "\u{7f}", "x\ny",
        ] {
            let mut out = String::new();
            push_json_str(&mut out, s);
            assert_eq!(serde_json::from_str::<String>(&out).expect("JSON"), s);
            assert_eq!(out, serde_json::to_string(s).expect("serializes"));
        }
    }
}
