//! HTTP request bodies, as the handlers of `api` read them (`http_body`),
//! and a publish body carried all the way through a hub and back out of a
//! receive (`publish`).

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::api::body::parse_json;
use crate::api::dto::{self, ReceiptsBody, ReceiveBody, RedriveBody, SubscribeBody};
use crate::api::error::ApiError;
use crate::hub::{Hub, NewMessage, ReceiveRequest};
use crate::model::{
    BodyEncoding, DeadLetterSettings, ManualClock, QueueName, QueueSettings, RetryBackoff,
    TopicName, TopicSettings, TopicSettingsPatch,
};

/// `http_body`: the first byte picks the endpoint, the rest is its body.
/// Parsing never panics, every refusal is a 4xx, and accepted settings
/// survive the round trip through their describe form.
pub fn http_body(data: &[u8]) -> bool {
    let Some((&endpoint, body)) = data.split_first() else {
        return false;
    };
    match endpoint % 7 {
        0 => publish_body(body),
        1 => queue_settings(body),
        2 => topic_settings(body),
        3 => client_error(parse_json::<ReceiveBody>(body)).is_some(),
        4 => receipts(body),
        5 => subscribe(body),
        _ => client_error(parse_json::<RedriveBody>(body)).is_some(),
    }
}

/// `Ok` as `Some`; a refusal must be the client's fault.
fn client_error<T>(r: Result<T, ApiError>) -> Option<T> {
    match r {
        Ok(v) => Some(v),
        Err(e) => {
            assert!(e.status.is_client_error(), "{} for a body: {e:?}", e.status);
            None
        }
    }
}

/// Parses a publish (or send) body into hub messages as the handler does.
fn parse_messages(body: &[u8]) -> Option<Vec<Result<NewMessage, ApiError>>> {
    let input = client_error(dto::parse_publish(body))?;
    let (_, entries) = client_error(crate::api::to_messages(input))?;
    for e in &entries {
        match e {
            Ok(m) => match m.body_encoding {
                BodyEncoding::Text => assert_eq!(m.body_len, m.body.len()),
                BodyEncoding::Base64 => assert!(m.body_len <= m.body.len()),
            },
            Err(e) => assert!(e.status.is_client_error(), "{e:?}"),
        }
    }
    Some(entries)
}

fn publish_body(body: &[u8]) -> bool {
    parse_messages(body).is_some()
}

/// A fully set base, unlike the defaults, so a round trip that dropped a
/// field would show.
fn odd_queue_settings() -> QueueSettings {
    QueueSettings {
        fifo: true,
        content_based_dedup: true,
        dedup_window_seconds: 61,
        delay_seconds: 1,
        visibility_timeout_seconds: 2,
        retention_seconds: 62,
        max_message_bytes: 1025,
        receive_wait_seconds: 3,
        dead_letter: Some(DeadLetterSettings {
            queue: QueueName::new("base-dlq").expect("a valid name"),
            max_receives: 4,
        }),
        retry_backoff: Some(RetryBackoff {
            initial_seconds: 5,
            max_seconds: 6,
        }),
    }
}

/// A `PUT /v1/queues/{q}` body. Settings that validate are written back
/// as the describe shows them; that form, as a body, gives the same settings
/// whatever they are applied to.
fn queue_settings(body: &[u8]) -> bool {
    let Some(patch) = client_error(dto::parse_queue_settings(body)) else {
        return false;
    };
    let settings = patch.apply(&QueueSettings::default());
    if settings.validate().is_err() {
        return false;
    }
    let shown = dto::settings_json(&settings).to_string();
    let again = dto::parse_queue_settings(shown.as_bytes()).expect("a describe's settings parse");
    assert_eq!(again.apply(&odd_queue_settings()), settings);
    assert_eq!(again.apply(&QueueSettings::default()), settings);
    true
}

/// A `PUT /v1/topics/{t}` body, and the same round trip.
fn topic_settings(body: &[u8]) -> bool {
    let Some(patch) = client_error(parse_json::<TopicSettingsPatch>(body)) else {
        return false;
    };
    let settings = patch.apply(&TopicSettings::default());
    if settings.validate().is_err() {
        return false;
    }
    let shown = serde_json::to_vec(&settings).expect("settings serialize");
    let again: TopicSettingsPatch = parse_json(&shown).expect("a describe's settings parse");
    let base = TopicSettings {
        fifo: !settings.fifo,
        content_based_dedup: !settings.content_based_dedup,
        dedup_window_seconds: 61,
    };
    assert_eq!(again.apply(&base), settings);
    true
}

/// An ack, nack or visibility body: the receipts are decoded one by one.
fn receipts(body: &[u8]) -> bool {
    let Some(b) = client_error(parse_json::<ReceiptsBody>(body)) else {
        return false;
    };
    let codec = super::codec();
    for r in &b.receipts {
        if let Some(decoded) = codec.decode(r) {
            assert_eq!(&codec.encode(&decoded), r);
        }
    }
    true
}

/// A subscription body: its filter compiles, and compiles to the same policy
/// from the text it is stored as.
fn subscribe(body: &[u8]) -> bool {
    let Some(b) = client_error(parse_json::<SubscribeBody>(body)) else {
        return false;
    };
    match &b.filter {
        Some(v) if !v.is_null() => super::filter::compiles_again(v).is_some(),
        _ => true,
    }
}

/// `publish`: a publish body carried through a hub (memory storage, a
/// manual clock): to a standard topic with an unfiltered, an attribute- and
/// a body-filtered queue, and sent to a FIFO queue with content-based
/// dedup. Whatever the hub accepts comes back out of a receive with its
/// body and attributes intact, in an answer that is valid JSON, with
/// receipts that ack.
pub fn publish(data: &[u8]) -> bool {
    let Some(entries) = parse_messages(data) else {
        return false;
    };
    let messages: Vec<NewMessage> = entries.into_iter().flatten().collect();
    if messages.is_empty() {
        return false;
    }
    super::runtime().block_on(through_a_hub(messages))
}

async fn through_a_hub(messages: Vec<NewMessage>) -> bool {
    let hub = Hub::new(
        Arc::new(ManualClock::new(1_764_000_000_000)),
        crate::config::Limits::default(),
    );
    let name = |s: &str| QueueName::new(s).expect("a valid name");
    let topic = TopicName::new("t").expect("a valid name");
    hub.put_topic(&topic, &TopicSettingsPatch::default())
        .await
        .expect("a topic");
    let filters = [
        ("all", None),
        ("attr", Some(serde_json::json!({"kind": [{"prefix": "a"}]}))),
        (
            "body",
            Some(serde_json::json!({"scope": "body", "kind": [{"exists": true}]})),
        ),
    ];
    for (q, filter) in filters {
        hub.put_queue(&name(q), &Default::default())
            .await
            .expect("a queue");
        hub.subscribe(&topic, &name(q), filter)
            .await
            .expect("a subscription");
    }
    let fifo = crate::model::QueueSettingsPatch {
        fifo: Some(true),
        content_based_dedup: Some(true),
        ..Default::default()
    };
    hub.put_queue(&name("f"), &fifo).await.expect("a queue");

    let sent: Vec<NewMessage> = messages.clone();
    let published = match hub.publish(&topic, messages).await {
        Ok(r) => r,
        Err(e) => {
            let e = ApiError::from(e);
            assert!(e.status.is_client_error(), "publish: {e:?}");
            return false;
        }
    };
    assert_eq!(published.len(), sent.len());
    if let Err(e) = hub.send(&name("f"), sent.clone()).await {
        let e = ApiError::from(e);
        assert!(e.status.is_client_error(), "send: {e:?}");
    }
    let accepted: Vec<(String, &NewMessage)> = published
        .iter()
        .zip(&sent)
        .filter_map(|(r, m)| match r {
            Ok(id) => Some((id.to_string(), m)),
            Err(e) => {
                let e = ApiError::from(e.clone());
                assert!(e.status.is_client_error(), "entry: {e:?}");
                None
            }
        })
        .collect();

    let codec = super::codec();
    for q in ["all", "attr", "body", "f"] {
        let got = hub
            .receive(
                &name(q),
                ReceiveRequest {
                    max: Some(100),
                    wait_seconds: Some(0),
                    visibility_timeout_seconds: None,
                },
            )
            .await
            .expect("a receive of an existing queue");
        // The hand-written answer must be JSON that reads back exactly.
        let text = dto::received_json(&got, &codec);
        let answer: serde_json::Value = serde_json::from_str(&text).expect("an answer is JSON");
        for (d, shown) in got
            .iter()
            .zip(answer["messages"].as_array().expect("a list"))
        {
            assert_eq!(shown["body"].as_str(), Some(d.message.body.as_str()));
            let attributes: BTreeMap<String, String> =
                serde_json::from_value(shown["attributes"].clone()).expect("attributes");
            assert_eq!(attributes, d.message.attributes);
            assert_eq!(
                codec.decode(shown["receipt"].as_str().expect("a receipt")),
                Some(d.receipt)
            );
            if q == "f" {
                continue;
            }
            let id = d.message.id.to_string();
            let (_, m) = accepted
                .iter()
                .find(|(a, _)| *a == id)
                .expect("a received message was published");
            assert_eq!(d.message.body, m.body);
            assert_eq!(d.message.attributes, m.attributes);
        }
        let receipts: Vec<_> = got.iter().map(|d| d.receipt).collect();
        let acked = hub.ack(&name(q), &receipts).await.expect("an ack");
        assert!(acked.iter().all(|r| r.is_ok()), "{acked:?}");
    }
    !accepted.is_empty()
}
