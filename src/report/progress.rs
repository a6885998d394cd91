//! Progress: an indicatif bar on a terminal, a log line every 10 s otherwise.

use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::Stats;

/// Shows progress until dropped or [`Progress::finish`]ed.
pub struct Progress {
    bar: Option<ProgressBar>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Progress {
    /// Starts reporting `stats`. `quiet` shows nothing.
    pub fn start(stats: Arc<Stats>, quiet: bool) -> Self {
        if quiet {
            return Progress {
                bar: None,
                task: None,
            };
        }
        if std::io::stderr().is_terminal() {
            let bar = ProgressBar::with_draw_target(
                Some(stats.bytes_total),
                ProgressDrawTarget::stderr_with_hz(8),
            );
            bar.set_style(
                ProgressStyle::with_template(
                    "{spinner} [{elapsed_precise}] {bar:30.cyan/blue} {bytes}/{total_bytes} {bytes_per_sec} ETA {eta} {msg}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            let b = bar.clone();
            let task = tokio::spawn(async move {
                loop {
                    b.set_position(Stats::get(&stats.bytes_done));
                    b.set_message(format!(
                        "· objects {}/{} · rows {} · shards {}",
                        Stats::get(&stats.objects_done),
                        stats.objects_total,
                        Stats::get(&stats.rows_in),
                        Stats::get(&stats.shards),
                    ));
                    tokio::time::sleep(Duration::from_millis(125)).await;
                }
            });
            Progress {
                bar: Some(bar),
                task: Some(task),
            }
        } else {
            let task = tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_secs(10)).await;
                    let read = Stats::get(&stats.bytes_read);
                    let elapsed = stats.started.elapsed().as_secs_f64();
                    tracing::info!(
                        objects_done = Stats::get(&stats.objects_done),
                        objects = stats.objects_total,
                        bytes_read = read,
                        bytes = stats.bytes_total,
                        rows_in = Stats::get(&stats.rows_in),
                        rows_out = Stats::get(&stats.rows_out),
                        shards = Stats::get(&stats.shards),
                        mb_per_s = format!("{:.1}", read as f64 / 1e6 / elapsed.max(1e-9)),
                        "progress {:.1}%",
                        100.0 * Stats::get(&stats.bytes_done) as f64
                            / stats.bytes_total.max(1) as f64
                    );
                }
            });
            Progress {
                bar: None,
                task: Some(task),
            }
        }
    }

    /// Stops and clears the display.
    pub fn finish(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
        if let Some(b) = self.bar.take() {
            b.finish_and_clear();
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}
