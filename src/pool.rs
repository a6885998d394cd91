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
//!
//! Steps do use rayon's own parallel iterators inside their jobs, and those wait by
//! stealing; what they steal may be a task's owner, injected by the scheduler. An owner
//! run there would sit on top of the job that stole it, and the job's task could not go
//! on until the whole other task is done; worse, the new owner may wait for budget slots
//! that only the buried task can give back. So a task's owner is started with
//! [`spawn_owner`], which never runs it on a thread already doing kiln's work: it hands it
//! back to the I/O runtime, which injects it again a moment later.
//!
//! That guard sees kiln's jobs and owners, not the other half of a parallel iterator's
//! split that an idle thread stole: such a thief waits, stealing, inside rayon's own
//! code, and may start an owner there, on top of the half the job that split it waits
//! for. The owner then waits for a budget slot that job holds: a cycle (seen on the
//! mixture example, three tasks tokenizing on two threads). So an owner that has waited
//! a while for a slot with nothing of its own in flight goes on without one
//! ([`Budget::permit_beyond`]): it finishes its task, one batch at a time over the
//! budget, and the half beneath it then resumes.

use std::cell::Cell;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Slots shared by the tasks of a pass: each holds one unit of work in flight (a row
/// group cut and not yet appended, a batch in the steps and not yet consumed); and, for
/// permits that say what they weigh, a cap on their bytes together.
#[derive(Debug)]
pub struct Budget {
    free: Mutex<Free>,
    cv: Condvar,
    /// The most bytes the permits hold together; one permit is let in whatever it weighs,
    /// so that a piece larger than the cap still runs (alone).
    max_bytes: u64,
}

#[derive(Debug)]
struct Free {
    slots: usize,
    /// Bytes the permits out now hold.
    bytes: u64,
}

impl Budget {
    pub fn new(slots: usize) -> Self {
        Self::with_bytes(slots, u64::MAX)
    }

    /// `slots`, and at most `max_bytes` of weighed permits at once (one always).
    pub fn with_bytes(slots: usize, max_bytes: u64) -> Self {
        Budget {
            free: Mutex::new(Free {
                slots: slots.max(1),
                bytes: 0,
            }),
            cv: Condvar::new(),
            max_bytes,
        }
    }

    /// Takes a slot, running this thread's own queued jobs (which free slots) while
    /// there is none. Returns how long it waited.
    pub fn take(&self) -> Duration {
        let start = Instant::now();
        wait(&self.free, &self.cv, |free| {
            if free.slots > 0 {
                free.slots -= 1;
                true
            } else {
                false
            }
        });
        start.elapsed()
    }

    /// Gives `n` slots back.
    pub fn give(&self, n: usize) {
        self.give_weighed(n, 0);
    }

    fn give_weighed(&self, n: usize, bytes: u64) {
        if n > 0 {
            let mut free = lock(&self.free);
            free.slots += n;
            free.bytes = free.bytes.saturating_sub(bytes);
            drop(free);
            self.cv.notify_all();
        }
    }

    /// A slot for work holding about `bytes`, if one is free and the bytes fit beside
    /// the permits out (or none is out); given back when the permit is dropped (wherever
    /// that happens: the job that filled it, or whoever drops its result).
    pub fn try_permit(self: &Arc<Self>, bytes: u64) -> Option<Permit> {
        let mut free = lock(&self.free);
        let fits = free.bytes == 0 || free.bytes.saturating_add(bytes) <= self.max_bytes;
        (free.slots > 0 && fits).then(|| {
            free.slots -= 1;
            free.bytes += bytes;
            Permit {
                budget: self.clone(),
                bytes,
                slot: true,
            }
        })
    }

    /// A permit beyond the budget: no slot taken, none given back. For an owner that
    /// would otherwise wait on a slot only work buried beneath it can free (module docs).
    pub fn permit_beyond(self: &Arc<Self>, bytes: u64) -> Permit {
        Permit {
            budget: self.clone(),
            bytes,
            slot: false,
        }
    }
}

/// One slot of a [`Budget`] (and the bytes it was taken for), given back on drop.
#[derive(Debug)]
pub struct Permit {
    budget: Arc<Budget>,
    bytes: u64,
    /// False for a permit let in beyond the budget, which holds no slot.
    slot: bool,
}

impl Drop for Permit {
    fn drop(&mut self) {
        if self.slot {
            self.budget.give_weighed(1, self.bytes);
        }
    }
}

thread_local! {
    /// True while this thread runs a task's owner or one of kiln's jobs.
    static BUSY: Cell<bool> = const { Cell::new(false) };
}

/// Marks this thread as doing kiln's work until dropped (nested marks keep the outer).
pub struct Busy(bool);

impl Busy {
    pub fn enter() -> Self {
        Busy(BUSY.with(|b| b.replace(true)))
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        BUSY.with(|b| b.set(self.0));
    }
}

/// Starts a task's owner on `pool`, never on top of other work of kiln's on the same
/// thread (see the module docs): a thread that takes it up inside a job (in rayon's
/// stealing wait) hands it back to `handle`, which injects it again after a millisecond.
pub fn spawn_owner(
    pool: Arc<rayon::ThreadPool>,
    handle: tokio::runtime::Handle,
    owner: Box<dyn FnOnce() + Send>,
) {
    let again = pool.clone();
    pool.spawn(move || {
        if BUSY.with(Cell::get) {
            let later = handle.clone();
            // Detached on purpose: it ends by starting the owner, whose task waits on
            // the owner's result.
            drop(later.spawn(async move {
                tokio::time::sleep(Duration::from_millis(1)).await;
                spawn_owner(again, handle, owner);
            }));
            return;
        }
        let _busy = Busy::enter();
        owner();
    });
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

    thread_local! {
        static IN_JOIN: Cell<bool> = const { Cell::new(false) };
    }

    /// A permit beyond the budget takes no slot and gives none back.
    #[test]
    fn a_permit_beyond_the_budget_holds_no_slot() {
        let budget = Arc::new(Budget::new(1));
        let held = budget.try_permit(10).expect("the one slot");
        assert!(budget.try_permit(10).is_none(), "the budget is spent");
        let beyond = budget.permit_beyond(10);
        drop(beyond);
        assert!(
            budget.try_permit(10).is_none(),
            "still spent: no slot came back"
        );
        drop(held);
        assert!(budget.try_permit(10).is_some(), "the slot is back");
    }

    /// A job waits in `rayon::join` (which steals while it waits, injected jobs too)
    /// while an owner is injected: the owner must not run inside that wait.
    #[test]
    fn an_owner_never_starts_inside_a_jobs_stealing_wait() {
        let io = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_time()
            .build()
            .expect("runtime");
        let pool = Arc::new(
            rayon::ThreadPoolBuilder::new()
                .num_threads(2)
                .build()
                .expect("pool"),
        );
        for _ in 0..5 {
            let (tx, rx) = std::sync::mpsc::channel();
            let (started_tx, started_rx) = std::sync::mpsc::channel();
            let job_pool = pool.clone();
            job_pool.spawn(move || {
                let _busy = Busy::enter();
                IN_JOIN.with(|j| j.set(true));
                let (b_tx, b_rx) = std::sync::mpsc::channel();
                rayon::join(
                    // Returns once the other half runs on the other thread, so this
                    // thread then waits for it, stealing, while the owner is injected.
                    move || {
                        let _ = b_rx.recv_timeout(Duration::from_secs(5));
                        let _ = started_tx.send(());
                    },
                    move || {
                        let _ = b_tx.send(());
                        std::thread::sleep(Duration::from_millis(100));
                    },
                );
                IN_JOIN.with(|j| j.set(false));
            });
            started_rx.recv().expect("the job started");
            spawn_owner(
                pool.clone(),
                io.handle().clone(),
                Box::new(move || {
                    let _ = tx.send(IN_JOIN.with(Cell::get));
                }),
            );
            let nested = rx
                .recv_timeout(Duration::from_secs(10))
                .expect("the owner ran");
            assert!(!nested, "the owner ran inside the job's join");
        }
    }

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
                    match budget.try_permit(0) {
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
        assert_eq!(lock(&budget.free).slots, 2);
    }

    #[test]
    fn weighed_permits_keep_within_the_bytes_but_one_always_gets_in() {
        let budget = Arc::new(Budget::with_bytes(4, 100));
        let big = budget.try_permit(250).expect("alone, any size gets in");
        assert!(budget.try_permit(1).is_none(), "the cap is spent");
        drop(big);
        let a = budget.try_permit(60).expect("fits");
        assert!(budget.try_permit(41).is_none(), "60 + 41 > 100");
        let b = budget.try_permit(40).expect("60 + 40 fits");
        assert!(
            budget.try_permit(0).is_some(),
            "weightless work needs a slot only"
        );
        drop((a, b));
        let free = lock(&budget.free);
        assert_eq!((free.slots, free.bytes), (4, 0));
    }
}
