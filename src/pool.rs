//! Waiting on a rayon thread without stealing, and the budgets that bound the work a
//! pass has in flight (row groups being encoded, batches going through the steps).
//!
//! A task runs on one rayon thread (its owner) and hands CPU work to the pool as jobs
//! spawned from that thread, which land in the owner's own queue, from where idle threads
//! steal them. An owner that must wait (for a budget slot, for the next result in order)
//! first runs the jobs still in its own queue, and only then sleeps, briefly, on a
//! condition variable. It never steals from other threads while it waits: rayon's
//! stealing wait also takes injected jobs, which would start a whole other task on top of
//! its own. Since every job is either running or in its spawner's queue, and a waiting
//! spawner runs its own queue, a wait always ends.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Slots shared by the tasks of a pass: each holds one unit of work in flight (a row
/// group cut and not yet appended, a batch in the steps and not yet consumed).
#[derive(Debug)]
pub struct Budget {
    free: Mutex<usize>,
    cv: Condvar,
}

impl Budget {
    pub fn new(slots: usize) -> Self {
        Budget {
            free: Mutex::new(slots.max(1)),
            cv: Condvar::new(),
        }
    }

    /// Takes a slot, running this thread's own queued jobs (which free slots) while
    /// there is none. Returns how long it waited.
    pub fn take(&self) -> Duration {
        let start = Instant::now();
        wait(&self.free, &self.cv, |free| {
            if *free > 0 {
                *free -= 1;
                true
            } else {
                false
            }
        });
        start.elapsed()
    }

    /// Gives `n` slots back.
    pub fn give(&self, n: usize) {
        if n > 0 {
            *lock(&self.free) += n;
            self.cv.notify_all();
        }
    }

    /// A slot if one is free, given back when the permit is dropped (wherever that
    /// happens: the job that filled it, or whoever drops its result).
    pub fn try_permit(self: &Arc<Self>) -> Option<Permit> {
        let mut free = lock(&self.free);
        (*free > 0).then(|| {
            *free -= 1;
            Permit(self.clone())
        })
    }
}

/// One slot of a [`Budget`], given back on drop.
#[derive(Debug)]
pub struct Permit(Arc<Budget>);

impl Drop for Permit {
    fn drop(&mut self) {
        self.0.give(1);
    }
}

/// Waits until `done` holds for the value behind `m`: runs jobs from this thread's own
/// rayon queue while there are any, else sleeps on `cv` (woken when the value changes,
/// and at least every millisecond).
pub fn wait<T>(m: &Mutex<T>, cv: &Condvar, mut done: impl FnMut(&mut T) -> bool) {
    loop {
        if done(&mut lock(m)) {
            return;
        }
        if rayon::yield_local() == Some(rayon::Yield::Executed) {
            continue;
        }
        let mut g = lock(m);
        if done(&mut g) {
            return;
        }
        drop(cv.wait_timeout(g, Duration::from_millis(1)));
    }
}

/// A lock whose holder panicked is still the data: every job catches its own panic and
/// records it as its result before the guard is dropped.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The message of a caught panic.
pub fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<String>()
        .cloned()
        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permits_come_back_when_dropped_anywhere() {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .expect("pool");
        let budget = Arc::new(Budget::new(2));
        let done = Arc::new((Mutex::new(0usize), Condvar::new()));
        pool.install(|| {
            for _ in 0..50 {
                let permit = loop {
                    match budget.try_permit() {
                        Some(p) => break p,
                        None => {
                            rayon::yield_local();
                        }
                    }
                };
                let done = done.clone();
                rayon::spawn(move || {
                    drop(permit);
                    *lock(&done.0) += 1;
                    done.1.notify_all();
                });
            }
            wait(&done.0, &done.1, |n| *n == 50);
        });
        assert_eq!(*lock(&budget.free), 2);
    }
}
