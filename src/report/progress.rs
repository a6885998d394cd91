//! Progress: on a terminal an indicatif bar per phase (each full pass over the input,
//! then the pass that writes), a log line every 10 s otherwise.

use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::{Phase, Stats};

/// Shows progress until dropped or [`Progress::finish`]ed.
pub struct Progress {
    bars: Option<MultiProgress>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Progress {
    /// Starts reporting `stats`, phase by phase ([`Stats::set_phase`]). `quiet` shows
    /// nothing.
    pub fn start(stats: Arc<Stats>, quiet: bool) -> Self {
        if quiet {
            return Progress {
                bars: None,
                task: None,
            };
        }
        if std::io::stderr().is_terminal() {
            let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(8));
            let m = multi.clone();
            #[expect(
                clippy::disallowed_methods,
                reason = "the display task is aborted by Progress::finish and on drop"
            )]
            let task = tokio::spawn(async move {
                let mut current: Option<(String, ProgressBar, Arc<Stats>)> = None;
                loop {
                    let shown = shown(&stats);
                    let changed = match (&current, &shown) {
                        (Some((was, ..)), Some((now, _))) => was != now,
                        (None, Some(_)) => true,
                        _ => false,
                    };
                    if changed {
                        if let Some((_, bar, s)) = current.take() {
                            // A pass that ended stays on screen, complete, above the next.
                            update(&bar, &s);
                            bar.finish();
                        }
                        if let Some((label, s)) = &shown {
                            current = Some((label.clone(), m.add(bar_for(label, s)), s.clone()));
                        }
                    }
                    if let Some((_, bar, s)) = &current {
                        update(bar, s);
                    }
                    tokio::time::sleep(Duration::from_millis(125)).await;
                }
            });
            Progress {
                bars: Some(multi),
                task: Some(task),
            }
        } else {
            #[expect(
                clippy::disallowed_methods,
                reason = "the display task is aborted by Progress::finish and on drop"
            )]
            let task = tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_secs(10)).await;
                    let Some((phase, stats)) = shown(&stats) else {
                        continue;
                    };
                    let read = Stats::get(&stats.bytes_read);
                    let elapsed = stats.started.elapsed().as_secs_f64();
                    tracing::info!(
                        phase,
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
                bars: None,
                task: Some(task),
            }
        }
    }

    /// Stops and clears the display.
    pub fn finish(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
        if let Some(m) = self.bars.take() {
            let _ = m.clear();
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}

/// The phase to show and its counters: a full pass's own, or the run's.
fn shown(stats: &Arc<Stats>) -> Option<(String, Arc<Stats>)> {
    match stats.phase() {
        Phase::Preparing => None,
        Phase::Pass { label, stats } => Some((label, stats)),
        Phase::Write => Some(("write".to_string(), stats.clone())),
    }
}

fn bar_for(label: &str, stats: &Stats) -> ProgressBar {
    let bar = ProgressBar::new(stats.bytes_total);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} {prefix} [{elapsed_precise}] {bar:30.cyan/blue} {bytes}/{total_bytes} {bytes_per_sec} ETA {eta} {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_prefix(label.to_string());
    bar
}

fn update(bar: &ProgressBar, stats: &Stats) {
    bar.set_position(Stats::get(&stats.bytes_done));
    bar.set_message(format!(
        "· objects {}/{} · rows {} · shards {}",
        Stats::get(&stats.objects_done),
        stats.objects_total,
        Stats::get(&stats.rows_in),
        Stats::get(&stats.shards),
    ));
}
