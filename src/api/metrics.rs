//! `GET /metrics`: Prometheus text. Queue and topic figures are read from the
//! hub at scrape time (no cost on the hot path) into a recorder made for that
//! scrape, so a deleted queue or topic disappears from the output (a
//! long-lived recorder would keep its last figures forever) and several
//! servers in one process (tests) do not mix.

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::Extension;
use metrics::{counter, gauge, with_local_recorder};
use metrics_exporter_prometheus::PrometheusBuilder;

use super::AppState;

/// `conns`: the accept loop's counters (`crate::net`), present in every
/// request it serves.
pub async fn render(
    State(s): State<AppState>,
    conns: Option<Extension<crate::net::ConnStats>>,
) -> impl IntoResponse {
    let hub = &s.hub;
    let recorder = PrometheusBuilder::new().build_recorder();
    with_local_recorder(&recorder, || {
        if let Some(Extension(c)) = &conns {
            c.record();
        }
        if let Some(l) = hub.storage().stats() {
            counter!("pubq_log_appends_total").absolute(l.appends);
            counter!("pubq_log_writes_total").absolute(l.writes);
            counter!("pubq_log_written_bytes_total").absolute(l.bytes);
            counter!("pubq_log_syncs_total").absolute(l.syncs);
            counter!("pubq_log_sync_microseconds_total").absolute(l.sync_micros);
        }
        gauge!("pubq_queues").set(hub.list_queues().len() as f64);
        gauge!("pubq_topics").set(hub.list_topics().len() as f64);
        for name in hub.list_queues() {
            let Ok(info) = hub.describe_queue(&name) else {
                continue;
            };
            let q = name.to_string();
            let st = &info.stats;
            gauge!("pubq_queue_visible", "queue" => q.clone()).set(st.visible as f64);
            gauge!("pubq_queue_delayed", "queue" => q.clone()).set(st.delayed as f64);
            gauge!("pubq_queue_in_flight", "queue" => q.clone()).set(st.in_flight as f64);
            gauge!("pubq_queue_oldest_age_seconds", "queue" => q.clone())
                .set((st.oldest_age_ms / 1000) as f64);
            let t = &st.totals;
            counter!("pubq_queue_sent_total", "queue" => q.clone()).absolute(t.sent);
            counter!("pubq_queue_received_total", "queue" => q.clone()).absolute(t.received);
            counter!("pubq_queue_acked_total", "queue" => q.clone()).absolute(t.acked);
            counter!("pubq_queue_dead_lettered_total", "queue" => q.clone())
                .absolute(t.dead_lettered);
            counter!("pubq_queue_expired_total", "queue" => q.clone()).absolute(t.expired);
            counter!("pubq_queue_purged_total", "queue" => q.clone()).absolute(t.purged);
            counter!("pubq_queue_deduplicated_total", "queue" => q).absolute(t.deduplicated);
        }
        for name in hub.list_topics() {
            let Ok(info) = hub.describe_topic(&name) else {
                continue;
            };
            let t = name.to_string();
            let st = &info.stats;
            counter!("pubq_topic_published_total", "topic" => t.clone()).absolute(st.published);
            counter!("pubq_topic_delivered_total", "topic" => t.clone()).absolute(st.delivered);
            counter!("pubq_topic_dropped_total", "topic" => t.clone()).absolute(st.dropped);
            counter!("pubq_topic_deduplicated_total", "topic" => t).absolute(st.deduplicated);
        }
    });
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        recorder.handle().render(),
    )
}
