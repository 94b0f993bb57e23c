//! The client side's record of what the server acknowledged (publishes that
//! got ids, acks that got `ok`) and of every delivery, with the checks that
//! can be made while the run goes on and the ones made on the final drain.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Instant;

/// The queues of the test. Topic `t` fans out to `a` and `b`; FIFO topic
/// `ft` feeds FIFO queue `f`. `a` and `f` have dead-letter queues.
pub const QUEUES: [&str; 5] = ["a", "a-dlq", "b", "f", "f-dlq"];
pub const MAX_RECEIVES: u32 = 2;

/// The dead-letter queue of a queue.
pub fn dlq_of(q: &str) -> Option<&'static str> {
    match q {
        "a" => Some("a-dlq"),
        "f" => Some("f-dlq"),
        _ => None,
    }
}

/// The queue a dead-letter queue serves.
pub fn source_of(dlq: &str) -> Option<&'static str> {
    match dlq {
        "a-dlq" => Some("a"),
        "f-dlq" => Some("f"),
        _ => None,
    }
}

/// The queues a topic's messages go to.
pub fn targets(topic: &str) -> &'static [&'static str] {
    match topic {
        "t" => &["a", "b"],
        _ => &["f"],
    }
}

/// One message as a receive returned it.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub queue: &'static str,
    pub id: String,
    pub body: String,
    pub receipt: String,
    pub receive_count: u32,
    pub group: Option<String>,
    pub dead_letter_source: Option<String>,
}

impl Delivery {
    pub fn parse(queue: &'static str, m: &serde_json::Value) -> Option<Self> {
        Some(Self {
            queue,
            id: m["id"].as_str()?.to_string(),
            body: m["body"].as_str()?.to_string(),
            receipt: m["receipt"].as_str()?.to_string(),
            receive_count: u32::try_from(m["receive_count"].as_u64()?).ok()?,
            group: m["group_id"].as_str().map(str::to_string),
            dead_letter_source: m["dead_letter_source"].as_str().map(str::to_string),
        })
    }
}

/// Counters for the summary line.
#[derive(Debug, Default)]
pub struct Stats {
    pub publish_failures: u64,
    pub deliveries: u64,
    pub acks: u64,
    pub stale_acks: u64,
    pub nacks: u64,
}

#[derive(Debug, Default)]
pub struct Ledger {
    /// Publishes answered with an id: id -> (topic, body).
    pub published: HashMap<String, (&'static str, String)>,
    /// body -> id of the confirmed publishes.
    pub published_body: HashMap<String, String>,
    /// Bodies whose publish got no answer: stored or not, either is right.
    pub unconfirmed: HashSet<String>,
    /// (queue, id) -> when an ack of it answered `ok`.
    pub acked: HashMap<(&'static str, String), Instant>,
    /// (queue, id) of acks never answered (the run stopped first): the
    /// message may be gone.
    pub ack_unknown: HashSet<(&'static str, String)>,
    /// Highest receive count seen per (source queue, id); a queue and its
    /// dead-letter queue share one count.
    counts: HashMap<(&'static str, String), u32>,
    pub violations: Vec<String>,
    pub stats: Stats,
    /// What happened to each message id, for the report of a violation.
    pub history: HashMap<String, Vec<String>>,
}

fn family(q: &'static str) -> &'static str {
    source_of(q).unwrap_or(q)
}

impl Ledger {
    /// Adds to a message's history.
    pub fn note(&mut self, id: &str, what: String) {
        self.history.entry(id.to_string()).or_default().push(what);
    }

    fn story(&self, id: &str) -> String {
        self.history
            .get(id)
            .map(|h| h.join("; "))
            .unwrap_or_default()
    }

    pub fn confirmed(&mut self, topic: &'static str, body: &str, id: &str) {
        self.note(id, format!("publish of {body} to {topic} confirmed"));
        if let Some(old) = self.published_body.insert(body.to_string(), id.to_string()) {
            if old != id {
                self.violations.push(format!(
                    "{body} was published as {old} and again as {id}: a retry with the same \
                     dedup id was not deduplicated"
                ));
            }
        }
        self.unconfirmed.remove(body);
        self.published
            .insert(id.to_string(), (topic, body.to_string()));
    }

    pub fn unanswered(&mut self, bodies: impl IntoIterator<Item = String>) {
        self.stats.publish_failures += 1;
        for b in bodies {
            if !self.published_body.contains_key(&b) {
                self.unconfirmed.insert(b);
            }
        }
    }

    /// Records a delivery by a receive sent at `sent_at`.
    pub fn delivered(&mut self, d: &Delivery, sent_at: Instant) {
        self.stats.deliveries += 1;
        self.note(
            &d.id,
            format!("received from {} with count {}", d.queue, d.receive_count),
        );
        if let Some(at) = self.acked.get(&(d.queue, d.id.clone())) {
            if *at < sent_at {
                self.violations.push(format!(
                    "{} delivered {} ({}) again after its ack was confirmed",
                    d.queue, d.id, d.body
                ));
            }
        }
        let prev = self
            .counts
            .entry((family(d.queue), d.id.clone()))
            .or_insert(0);
        if d.receive_count <= *prev {
            self.violations.push(format!(
                "{} delivered {} ({}) with receive count {} after {} had been seen",
                d.queue, d.id, d.body, d.receive_count, prev
            ));
        }
        *prev = (*prev).max(d.receive_count);
        if d.dead_letter_source.as_deref() != source_of(d.queue) {
            self.violations.push(format!(
                "{} delivered {} with dead_letter_source {:?}",
                d.queue, d.id, d.dead_letter_source
            ));
        }
    }

    /// Records the per-receipt results of an ack.
    pub fn ack_results(&mut self, ds: &[&Delivery], answer: &serde_json::Value) {
        let results = answer["results"].as_array().cloned().unwrap_or_default();
        if results.len() != ds.len() {
            self.violations.push(format!(
                "ack answered {} results for {}",
                results.len(),
                ds.len()
            ));
            return;
        }
        let now = Instant::now();
        for (d, r) in ds.iter().zip(results) {
            if r["ok"] == serde_json::Value::Bool(true) {
                self.stats.acks += 1;
                self.note(&d.id, format!("ack in {} ok", d.queue));
                self.acked.entry((d.queue, d.id.clone())).or_insert(now);
                continue;
            }
            match r["error"]["code"].as_str() {
                // Received again after a restart (leases are not durable).
                Some("ReceiptStale") => self.stats.stale_acks += 1,
                other => self.violations.push(format!(
                    "ack of {} in {} answered {other:?}: receipts must survive restarts",
                    d.id, d.queue
                )),
            }
        }
    }

    /// Records acks that got no answer before the run stopped.
    pub fn ack_unanswered(&mut self, ds: &[&Delivery]) {
        for d in ds {
            self.note(&d.id, format!("ack in {} unanswered", d.queue));
            self.ack_unknown.insert((d.queue, d.id.clone()));
        }
    }

    /// Checks the final drain (every queue emptied after the last restart).
    /// Returns how many messages were both in a queue and its dead-letter
    /// queue (a dead-letter move cut by the kill; allowed, at least once).
    pub fn check_drain(&mut self, drained: &BTreeMap<&'static str, Vec<Delivery>>) -> usize {
        let empty = Vec::new();
        let held = |q: &str| -> HashSet<&str> {
            drained
                .get(q)
                .unwrap_or(&empty)
                .iter()
                .map(|d| d.id.as_str())
                .collect()
        };
        let mut v = Vec::new();
        // Nothing acknowledged is lost.
        for (id, (topic, body)) in &self.published {
            for &q in targets(topic) {
                let mut homes = vec![q];
                homes.extend(dlq_of(q));
                let found = homes.iter().any(|h| {
                    let key = (*h, id.clone());
                    self.acked.contains_key(&key)
                        || self.ack_unknown.contains(&key)
                        || held(h).contains(id.as_str())
                });
                if !found {
                    v.push(format!(
                        "{id} ({body}) was published to {topic} and is neither acked nor in {q}: {}",
                        self.story(id)
                    ));
                }
            }
        }
        let mut both = 0;
        for (&q, ds) in drained {
            // No message twice in one queue.
            let mut seen = HashSet::new();
            for d in ds {
                if !seen.insert(d.id.as_str()) {
                    v.push(format!("{q} held {} ({}) twice", d.id, d.body));
                }
                match self.published.get(&d.id) {
                    Some((_, body)) if *body != d.body => {
                        v.push(format!("{q} held {} with body {} not {body}", d.id, d.body))
                    }
                    Some(_) => {}
                    None if self.published_body.contains_key(&d.body) => v.push(format!(
                        "{q} held {} ({}), a second copy of a confirmed publish",
                        d.id, d.body
                    )),
                    None if !self.unconfirmed.contains(&d.body) => {
                        v.push(format!("{q} held {} ({}), never published", d.id, d.body))
                    }
                    None => {}
                }
            }
            if let Some(src) = source_of(q) {
                for d in ds {
                    // The drain's receive counts one more.
                    if d.receive_count <= MAX_RECEIVES {
                        v.push(format!(
                            "{q} held {} received {} times, fewer than max_receives",
                            d.id,
                            d.receive_count - 1
                        ));
                    }
                }
                both += held(src).intersection(&held(q)).count();
            }
        }
        // FIFO order per group in what is left.
        let mut last: HashMap<&str, u64> = HashMap::new();
        for d in drained.get("f").unwrap_or(&empty) {
            let group = d.group.as_deref().unwrap_or("?");
            let n: u64 = d
                .body
                .rsplit('-')
                .next()
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            if let Some(prev) = last.insert(group, n) {
                if n <= prev {
                    v.push(format!(
                        "f delivered group {group} out of order: {n} after {prev}"
                    ));
                }
            }
        }
        self.violations.extend(v);
        both
    }
}
