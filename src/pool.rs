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
//! Jobs do wait by stealing (a job waiting for the chunks of rows it split off, below),
//! and what they steal may be a task's owner, injected by the scheduler. An owner run
//! there would sit on top of the job that stole it, and the job's task could not go on
//! until the whole other task is done; worse, the new owner may wait for budget slots
//! that only the buried task can give back. So a task's owner is started with
//! [`spawn_owner`], which never runs it on a thread marked as doing kiln's work
//! ([`Busy`]): it hands it back to the I/O runtime, which injects it again a moment
//! later.
//!
//! Steps split a batch's rows over the pool with [`par_map`] rather than rayon's
//! parallel iterators, and that is what keeps the marks whole: a parallel
//! iterator's halves wait for each other by stealing, on whatever thread took them up,
//! and a thread idle in the pool that stole a half is not marked as doing kiln's work.
//! An owner it then stole would sit on top of the half, the job that split the rows
//! could not go on until the whole other task was done, and that owner could wait for a
//! budget slot only the buried job gives back: a cycle (seen on the mixture example,
//! three tasks tokenizing on two threads, before [`par_map`]). [`par_map`] marks the
//! thread that calls it and every chunk of rows it hands out, and a chunk never waits,
//! so every stealing wait in kiln's code is on a marked thread, and an owner only ever
//! starts on a thread with nothing of kiln's beneath it.

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
            }
        })
    }
}

/// One slot of a [`Budget`] (and the bytes it was taken for), given back on drop.
#[derive(Debug)]
pub struct Permit {
    budget: Arc<Budget>,
    bytes: u64,
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.budget.give_weighed(1, self.bytes);
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

/// `f(state, i)` for every row `i` in `0..n`, in row order, on every thread of the
/// current pool: the rows are cut into chunks of at least `min_len` (a few per thread,
/// for balance), each chunk with its own `init()` state. The calling thread and every
/// chunk are marked as kiln's work and a chunk never waits, so no task's owner starts
/// inside it (module docs): use this, not rayon's parallel iterators, in steps and
/// decoders.
pub fn par_map<S, R: Send>(
    n: usize,
    min_len: usize,
    init: impl Fn() -> S + Sync,
    f: impl Fn(&mut S, usize) -> R + Sync,
) -> Vec<R> {
    let _busy = Busy::enter();
    let chunks = (n / min_len.max(1)).clamp(1, rayon::current_num_threads() * CHUNKS_PER_THREAD);
    if chunks == 1 {
        let mut state = init();
        return (0..n).map(|i| f(&mut state, i)).collect();
    }
    let size = n.div_ceil(chunks);
    let mut parts: Vec<Vec<R>> = Vec::new();
    parts.resize_with(n.div_ceil(size), Vec::new);
    let (init, f) = (&init, &f);
    rayon::scope(|s| {
        for (c, part) in parts.iter_mut().enumerate() {
            s.spawn(move |_| {
                let _busy = Busy::enter();
                let mut state = init();
                *part = (c * size..((c + 1) * size).min(n))
                    .map(|i| f(&mut state, i))
                    .collect();
            });
        }
    });
    let mut out = Vec::with_capacity(n);
    for part in parts {
        out.extend(part);
    }
    out
}

/// [`par_map`] without per-chunk state.
pub fn par_rows<R: Send>(n: usize, min_len: usize, f: impl Fn(usize) -> R + Sync) -> Vec<R> {
    par_map(n, min_len, || (), |(), i| f(i))
}

/// Chunks [`par_map`] cuts per thread: enough that a thread done early finds another
/// (rows differ in cost: a long document, a large image), few enough to stay cheap.
const CHUNKS_PER_THREAD: usize = 4;

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

    /// An I/O runtime to hand owners back to, and a CPU pool of two threads.
    fn io_and_pool() -> (tokio::runtime::Runtime, Arc<rayon::ThreadPool>) {
        let io = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_time()
            .build()
            .expect("runtime");
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .expect("pool");
        (io, Arc::new(pool))
    }

    #[test]
    fn par_map_keeps_row_order_with_a_state_per_chunk() {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(3)
            .build()
            .expect("pool");
        for (n, min_len) in [(0, 1), (1, 1), (7, 3), (100, 1), (1000, 64), (1001, 7)] {
            let got = pool.install(|| {
                par_map(
                    n,
                    min_len,
                    || 0usize,
                    |seen, i| {
                        *seen += 1;
                        (i, *seen)
                    },
                )
            });
            assert_eq!(got.len(), n);
            assert!(
                got.iter().enumerate().all(|(i, (j, _))| i == *j),
                "{n} rows"
            );
            // Each chunk counts from 1 with its own state, and holds at least min_len
            // rows (but the last).
            let chunks = got.iter().filter(|(_, seen)| *seen == 1).count();
            assert!(
                chunks <= (n / min_len).max(1),
                "{n} rows in {chunks} chunks"
            );
        }
    }

    /// The shape that deadlocked with rayon's parallel iterators: a job holds the only
    /// budget slot while its rows run on every thread, and owners injected meanwhile
    /// wait for that slot. An owner started inside the job's wait for its rows would
    /// wait for a slot the job beneath it holds, forever; every round must end.
    #[test]
    fn owners_injected_while_a_job_splits_its_rows_never_wait_beneath_it() {
        let (io, pool) = io_and_pool();
        let (tx, rx) = std::sync::mpsc::channel();
        for round in 0..40 {
            let budget = Arc::new(Budget::new(1));
            let held = budget.try_permit(0).expect("the one slot");
            let job_tx = tx.clone();
            let (started_tx, started_rx) = std::sync::mpsc::channel();
            pool.spawn(move || {
                let _busy = Busy::enter();
                let rows = par_rows(512, 1, |i| {
                    if i % 64 == 8 {
                        let _ = started_tx.send(());
                    }
                    let until = Instant::now() + Duration::from_micros(40);
                    while Instant::now() < until {
                        std::hint::spin_loop();
                    }
                    i
                });
                drop(held);
                let _ = job_tx.send(rows.len());
            });
            // The owners arrive while the rows run, when threads wait for each other.
            started_rx.recv().expect("the rows started");
            for _ in 0..3 {
                let (budget, tx) = (budget.clone(), tx.clone());
                spawn_owner(
                    pool.clone(),
                    io.handle().clone(),
                    Box::new(move || {
                        budget.take();
                        budget.give(1);
                        let _ = tx.send(0);
                    }),
                );
            }
            for _ in 0..4 {
                rx.recv_timeout(Duration::from_secs(30))
                    .unwrap_or_else(|_| panic!("round {round}: an owner waits beneath the job"));
            }
        }
    }

    /// A job waits in `rayon::join` (which steals while it waits, injected jobs too)
    /// while an owner is injected: the owner must not run inside that wait.
    #[test]
    fn an_owner_never_starts_inside_a_jobs_stealing_wait() {
        let (io, pool) = io_and_pool();
        for _ in 0..5 {
            let (tx, rx) = std::sync::mpsc::channel();
            let (started_tx, started_rx) = std::sync::mpsc::channel();
            let job_pool = pool.clone();
            job_pool.spawn(move || {
                let _busy = Busy::enter();
                IN_JOIN.with(|j| j.set(true));
                let (b_tx, b_rx) = std::sync::mpsc::channel();
                #[expect(
                    clippy::disallowed_methods,
                    reason = "the test: a job waiting in rayon's stealing join"
                )]
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
