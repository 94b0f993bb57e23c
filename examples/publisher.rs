//! Publishing with the typed HTTP client (`pubq::client::Client`): sets up a
//! topic, a work queue and the subscription between them when they are
//! missing, then publishes one message on its own and the rest in batches,
//! each with attributes, and prints every message id (or per-entry error).
//!
//! ```text
//! cargo run --example publisher -- [TOPIC] [COUNT] [--queue QUEUE] [--poison]
//! ```
//!
//! - `TOPIC` defaults to `orders`, `COUNT` to 10, `QUEUE` to `TOPIC-jobs`.
//! - `--poison` ends the run with a poison pill (`"poison": true`), which tells
//!   a consumer (`pull_worker`, `ws_subscriber`) to stop.
//! - The server is `PUBQ_URL` (default `http://127.0.0.1:7733`); `PUBQ_TOKEN`,
//!   when set, is sent as a bearer token.
//!
//! Every message carries attributes that `pull_worker` reads: `work_ms` (how
//! long the simulated job takes; every 4th job is slow, longer than the
//! worker's visibility timeout) and `fail_first` (every 5th job fails on its
//! first attempt, so the worker nacks it and it comes back).

use std::collections::BTreeMap;

use anyhow::{bail, Context, Result};
use pubq::client::{Client, OutgoingMessage};
use serde_json::json;

/// Largest batch the API takes is 100; 10 keeps each request small.
const BATCH_SIZE: usize = 10;

struct Args {
    server: String,
    token: Option<String>,
    topic: String,
    queue: String,
    count: usize,
    poison: bool,
}

fn parse_args() -> Result<Args> {
    let mut positional = Vec::new();
    let mut queue = None;
    let mut poison = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--queue" => queue = Some(args.next().context("--queue needs a name")?),
            "--poison" => poison = true,
            "-h" | "--help" => {
                println!("usage: publisher [TOPIC] [COUNT] [--queue QUEUE] [--poison]");
                std::process::exit(0);
            }
            s if s.starts_with("--") => bail!("unknown flag {s}"),
            _ => positional.push(arg),
        }
    }
    if positional.len() > 2 {
        bail!("at most two positional arguments: TOPIC COUNT");
    }
    let mut positional = positional.into_iter();
    let topic = positional.next().unwrap_or_else(|| "orders".into());
    let count = match positional.next() {
        Some(n) => n
            .parse()
            .with_context(|| format!("COUNT {n:?} is no number"))?,
        None => 10,
    };
    Ok(Args {
        server: std::env::var("PUBQ_URL").unwrap_or_else(|_| "http://127.0.0.1:7733".into()),
        token: std::env::var("PUBQ_TOKEN").ok().filter(|t| !t.is_empty()),
        queue: queue.unwrap_or_else(|| format!("{topic}-jobs")),
        topic,
        count,
        poison,
    })
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = parse_args()?;
    let client = Client::new(&args.server, args.token.clone())?;
    ensure_topology(&client, &args.topic, &args.queue).await?;

    let messages: Vec<OutgoingMessage> = (1..=args.count).map(order).collect();
    let Some((first, rest)) = messages.split_first() else {
        println!("nothing to publish (COUNT is 0)");
        return finish(&client, &args).await;
    };

    // One message: the answer is its id, or the whole request fails.
    let id = client.publish(&args.topic, first).await?;
    println!("published #1 id={id}");

    // Batches: one result per entry, in order, so a bad entry never hides
    // the others (the request itself still fails as a whole on e.g. 404).
    let mut n = 1;
    let mut failed = 0;
    for chunk in rest.chunks(BATCH_SIZE) {
        let results = client.publish_batch(&args.topic, chunk).await?;
        println!("published a batch of {}", chunk.len());
        for result in results {
            n += 1;
            match result {
                Ok(id) => println!("published #{n} id={id}"),
                Err(e) => {
                    failed += 1;
                    eprintln!("entry #{n} refused: {}: {}", e.code, e.message);
                }
            }
        }
    }
    println!(
        "published {} of {} messages to topic {:?}",
        args.count - failed,
        args.count,
        args.topic
    );
    finish(&client, &args).await
}

/// The poison pill, when asked for.
async fn finish(client: &Client, args: &Args) -> Result<()> {
    if args.poison {
        let pill = OutgoingMessage {
            poison: true,
            ..OutgoingMessage::text("no more work")
        };
        let id = client.publish(&args.topic, &pill).await?;
        println!("published poison pill id={id}");
    }
    Ok(())
}

/// The `n`th order event: a JSON body plus the attributes consumers and
/// subscription filters look at (attribute values are always strings).
fn order(n: usize) -> OutgoingMessage {
    let work_ms = if n.is_multiple_of(4) { 9_000 } else { 300 };
    let attributes = BTreeMap::from([
        ("type".to_string(), "order_placed".to_string()),
        ("seq".to_string(), n.to_string()),
        ("work_ms".to_string(), work_ms.to_string()),
        ("fail_first".to_string(), n.is_multiple_of(5).to_string()),
    ]);
    OutgoingMessage {
        attributes,
        ..OutgoingMessage::text(json!({"order": n, "amount": 10 * n}).to_string())
    }
}

/// Creates what is missing and leaves what exists alone: a `PUT` of an
/// existing queue would merge settings and a re-subscribe would replace the
/// subscription's filter, so both are looked at first.
async fn ensure_topology(client: &Client, topic: &str, queue: &str) -> Result<()> {
    // Creating a topic is idempotent.
    client.put_topic(topic, &json!({})).await?;

    match client.get_queue(queue).await {
        Ok(_) => {}
        Err(e) if e.code() == Some("QueueNotFound") => {
            client
                .put_queue(queue, &json!({"visibility_timeout_seconds": 30}))
                .await?;
            println!("created queue {queue:?}");
        }
        Err(e) => return Err(e.into()),
    }

    let described = client.get_topic(topic).await?;
    let subscribed = described["subscriptions"]
        .as_array()
        .is_some_and(|subs| subs.iter().any(|s| s["queue"] == queue));
    if !subscribed {
        // A standard topic cannot feed a FIFO queue, and so on: say which pair.
        client
            .subscribe(topic, queue, None)
            .await
            .with_context(|| format!("cannot subscribe queue {queue:?} to topic {topic:?}"))?;
        println!("subscribed queue {queue:?} to topic {topic:?}");
    }
    Ok(())
}
