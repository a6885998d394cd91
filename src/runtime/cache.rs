//! The batches a fit pass decoded, kept for the passes after it when they fit in memory.
//!
//! A pipeline with fitted steps reads its input twice: a full pass for the statistics,
//! then the transform pass. When the decoded input fits in half of `run.memory_limit`,
//! the fit pass decodes every column (not only those the fit reads) and keeps each
//! task's batches here; later fit passes and the transform pass take them instead of
//! reading and parsing the objects again. The first task whose batches would pass the
//! budget drops the whole cache, and every pass after reads the objects as before: the
//! output is the same either way (the batches are those the decoder makes), only the
//! work differs.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use arrow::record_batch::RecordBatch;

/// A decoded batch and the index (in the plan's listing) of the object it came from.
pub type Decoded = (usize, RecordBatch);

#[derive(Debug)]
pub struct DecodedCache {
    budget: u64,
    overflowed: AtomicBool,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    used: u64,
    tasks: HashMap<usize, Vec<Decoded>>,
}

impl DecodedCache {
    pub fn new(budget: u64) -> Self {
        DecodedCache {
            budget,
            overflowed: AtomicBool::new(false),
            inner: Mutex::default(),
        }
    }

    /// Bytes one task may collect before it gives up on caching.
    pub fn budget(&self) -> u64 {
        self.budget
    }

    /// Arrow bytes kept.
    pub fn used(&self) -> u64 {
        self.lock().used
    }

    /// True until the cache has overflowed.
    pub fn accepting(&self) -> bool {
        !self.overflowed.load(Ordering::Relaxed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Keeps a task's decoded batches (`bytes` in Arrow memory), or, if they would pass
    /// the budget, drops everything and accepts nothing more.
    pub fn offer(&self, task: usize, batches: Vec<Decoded>, bytes: u64) {
        if !self.accepting() {
            return;
        }
        let mut inner = self.lock();
        if inner.used + bytes > self.budget {
            self.overflowed.store(true, Ordering::Relaxed);
            inner.tasks.clear();
            inner.used = 0;
            tracing::info!(
                budget = self.budget,
                "the decoded input is larger than half of run.memory_limit: later passes read it again"
            );
            return;
        }
        inner.used += bytes;
        inner.tasks.insert(task, batches);
    }

    /// A task's batches, left in the cache (for a fit pass; another may follow).
    pub fn get(&self, task: usize) -> Option<Vec<Decoded>> {
        self.lock().tasks.get(&task).cloned()
    }

    /// A task's batches, taken out (for the transform pass, the last to need them).
    pub fn take(&self, task: usize) -> Option<Vec<Decoded>> {
        let mut inner = self.lock();
        let batches = inner.tasks.remove(&task)?;
        let bytes: u64 = batches
            .iter()
            .map(|(_, b)| b.get_array_memory_size() as u64)
            .sum();
        inner.used = inner.used.saturating_sub(bytes);
        Some(batches)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::Int64Array;
    use std::sync::Arc;

    fn batch(n: i64) -> RecordBatch {
        RecordBatch::try_from_iter([("a", Arc::new(Int64Array::from_iter_values(0..n)) as _)])
            .expect("batch")
    }

    #[test]
    fn keeps_within_the_budget_and_drops_everything_past_it() {
        let cache = DecodedCache::new(100);
        cache.offer(0, vec![(0, batch(2))], 60);
        assert_eq!(cache.get(0).map(|b| b[0].1.num_rows()), Some(2));
        assert_eq!(
            cache.get(0).map(|b| b[0].1.num_rows()),
            Some(2),
            "get leaves it"
        );
        cache.offer(1, vec![(1, batch(3))], 60);
        assert!(!cache.accepting());
        assert!(cache.get(0).is_none(), "an overflow drops what was kept");
        cache.offer(2, vec![(2, batch(1))], 1);
        assert!(cache.take(2).is_none(), "and takes nothing after");
    }

    #[test]
    fn take_removes() {
        let cache = DecodedCache::new(1 << 20);
        cache.offer(3, vec![(7, batch(4))], 10);
        assert!(cache.take(3).is_some());
        assert!(cache.take(3).is_none());
    }
}
