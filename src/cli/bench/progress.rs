//! The progress bar on stderr (indicatif): one phase at a time (connect,
//! publish, fill, drain), redrawn from the run's counters five times a second,
//! so the hot paths never touch it. Hidden with `--json`, `--no-progress`, or
//! when stderr is not a terminal.

use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::task::JoinHandle;

use super::harness::RunState;
use super::report::thousands;
use super::stats::Counters;

/// How often the bar is redrawn.
const TICK: Duration = Duration::from_millis(200);

pub struct Progress {
    bar: ProgressBar,
    ticker: Option<JoinHandle<()>>,
}

impl Progress {
    pub fn new(wanted: bool) -> Self {
        let bar = if wanted && std::io::stderr().is_terminal() {
            ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr())
        } else {
            ProgressBar::hidden()
        };
        bar.set_style(
            ProgressStyle::with_template("{prefix:>9} [{bar:32}] {msg}")
                .expect("a constant template is valid")
                .progress_chars("=> "),
        );
        Self { bar, ticker: None }
    }

    /// Starts a phase: the bar runs from 0 to `len` along `position`, and
    /// its message shows the publish and delivery rates since the last tick.
    pub fn phase(
        &mut self,
        state: &Arc<RunState>,
        label: &'static str,
        len: u64,
        position: impl Fn(&RunState) -> u64 + Send + 'static,
    ) {
        self.stop_ticker();
        if self.bar.is_hidden() {
            return;
        }
        self.bar.set_prefix(label);
        self.bar.set_length(len.max(1));
        self.bar.set_position(0);
        let bar = self.bar.clone();
        let state = state.clone();
        self.ticker = Some(tokio::spawn(async move {
            let mut ticks = tokio::time::interval(TICK);
            let mut last = (0u64, 0u64);
            loop {
                ticks.tick().await;
                let published = Counters::get(&state.counters.published);
                let delivered = Counters::get(&state.counters.delivered);
                let per_second =
                    |now: u64, before: u64| now.saturating_sub(before) as f64 / TICK.as_secs_f64();
                bar.set_position(position(&state).min(len));
                bar.set_message(format!(
                    "published {} ({}/s) · delivered {} ({}/s)",
                    thousands(published),
                    thousands(per_second(published, last.0) as u64),
                    thousands(delivered),
                    thousands(per_second(delivered, last.1) as u64),
                ));
                last = (published, delivered);
            }
        }));
    }

    /// Shows a counter that is not a run counter (connections made).
    pub fn count(&mut self, label: &'static str, done: u64, len: u64) {
        self.stop_ticker();
        self.bar.set_prefix(label);
        self.bar.set_length(len.max(1));
        self.bar.set_position(done);
        self.bar
            .set_message(format!("{} of {}", thousands(done), thousands(len)));
    }

    fn stop_ticker(&mut self) {
        if let Some(t) = self.ticker.take() {
            t.abort();
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.stop_ticker();
        self.bar.finish_and_clear();
    }
}
