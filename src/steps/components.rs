//! Connected components within a memory budget, for `dedup.minhash`'s clusters.
//!
//! Nodes are u128 positions; a component's root is its smallest node. Edges are joined
//! in a union-find in memory (the fast way, and the whole story while it fits). When
//! it reaches its share of the budget, its clusters are written out as edges (member,
//! root), in both directions, to sorted runs in the step's spill directory, and it
//! starts empty: the union of what was written and what follows has the same
//! components as the input.
//!
//! When anything was written, the components of the written edges are found on disk by
//! rounds of alternating *large-star* and *small-star* (Kiveris et al., "Connected
//! Components in MapReduce and Beyond", SoCC 2014): each round merges the edges
//! sorted by node, so that every node's neighbours arrive together in order, and
//! writes the next round's edges:
//! - large-star: each neighbour `v > u` of `u` is joined to the smallest of `u` and its
//!   neighbours instead of to `u`;
//! - small-star: `u` and each neighbour `v < u` are joined to the smallest of them.
//!
//! Both keep every component and its smallest node; alternated, they reach O(log² n)
//! rounds at most, and in practice a few, since the written clusters are stars
//! already. A round whose input is a forest of stars each centred on its smallest node
//! (every node has only larger neighbours, or exactly one, smaller) is the answer: its
//! leaves are read in node order. Memory in the rounds: the merge's read buffers and
//! a write buffer; disk: 56 bytes an edge.
//!
//! The answer either way: every node that is not its component's root, with the root,
//! in node order.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::PathBuf;

use super::StepError;
use super::spill::{Rec, Runs, io_err, le};

/// Bytes of a hash table bucket of the union-find: a slot (32) and its control byte.
const SLOT_BYTES: u64 = 33;
/// The largest buffer of edges before a sorted run is written.
const EDGE_BUFFER: u64 = 8 << 20;

pub struct Components<'a> {
    runs: &'a Runs,
    parent: HashMap<u128, u128, foldhash::fast::RandomState>,
    /// Bytes the union-find's table may take: it is written out rather than grown past.
    share: u64,
    /// Edge records buffered before a sorted run is written.
    records: usize,
    buf: Vec<Rec>,
    /// The sorted runs of the edges written (each edge in both directions).
    edges: Vec<PathBuf>,
}

/// An edge `node -> other` as a spill record: sorted by node, then by other.
fn edge(node: u128, other: u128) -> Rec {
    Rec {
        key: node,
        task: (other >> 64) as u32,
        row: other as u64,
    }
}

fn other(r: &Rec) -> u128 {
    (u128::from(r.task) << 64) | u128::from(r.row)
}

impl<'a> Components<'a> {
    /// Components within `budget` bytes: half for the union-find's table (38 to 76 bytes
    /// a node as it fills and doubles), up to a third (8 MiB at most: runs of it merge as
    /// well as larger ones) for the buffer of edges written. Nodes are below 2^96.
    pub fn new(runs: &'a Runs, budget: u64) -> Components<'a> {
        let rec = std::mem::size_of::<Rec>() as u64;
        Components {
            runs,
            parent: HashMap::default(),
            share: budget / 2,
            records: ((budget / 3).min(EDGE_BUFFER) / rec).max(64) as usize,
            buf: Vec::new(),
            edges: Vec::new(),
        }
    }

    /// The root of `x`'s set, without changing the union-find.
    fn root(&self, x: u128) -> u128 {
        root_in(&self.parent, x)
    }

    fn find(&mut self, x: u128) -> u128 {
        let root = self.root(x);
        // Path compression: one lookup a node, and none past the first that already
        // points at the root.
        let mut cur = x;
        while cur != root {
            match self.parent.get_mut(&cur) {
                Some(p) if *p != root => cur = std::mem::replace(p, root),
                _ => break,
            }
        }
        root
    }

    /// Joins the components of `a` and `b`.
    pub fn union(&mut self, a: u128, b: u128) -> Result<(), StepError> {
        let (ra, rb) = (self.find(a), self.find(b));
        if ra != rb {
            let (lo, hi) = if ra < rb { (ra, rb) } else { (rb, ra) };
            self.parent.insert(hi, lo);
            self.parent.entry(lo).or_insert(lo);
            // The next union may add two nodes: if that would double the table past its
            // share, the union-find is written out instead.
            let cap = self.parent.capacity();
            if self.parent.len() + 2 > cap && 2 * table_bytes(cap) > self.share {
                self.write_out()?;
            }
        }
        Ok(())
    }

    /// The union-find's clusters as edges (member, root), both ways, to sorted runs; the
    /// union-find is emptied (its memory kept for what follows).
    fn write_out(&mut self) -> Result<(), StepError> {
        let mut parent = std::mem::take(&mut self.parent);
        let mut edges = std::mem::take(&mut self.edges);
        for &m in parent.keys() {
            let r = root_in(&parent, m);
            if r != m {
                self.push(m, r, &mut edges)?;
            }
        }
        parent.clear();
        self.parent = parent;
        self.edges = edges;
        Ok(())
    }

    /// Buffers the edge `a — b` (both directions), writing a run to `out` when the
    /// buffer is full.
    fn push(&mut self, a: u128, b: u128, out: &mut Vec<PathBuf>) -> Result<(), StepError> {
        self.buf.push(edge(a, b));
        self.buf.push(edge(b, a));
        if self.buf.len() >= self.records {
            self.runs.flush(&mut self.buf, out)?;
        }
        Ok(())
    }

    /// Every node that is not its component's root, with its root, in node order; the
    /// rounds on disk it took (0: all in memory).
    pub fn finish(
        mut self,
        mut each: impl FnMut(u128, u128) -> Result<(), StepError>,
    ) -> Result<usize, StepError> {
        if self.edges.is_empty() && self.buf.is_empty() {
            let mut pairs: Vec<(u128, u128)> = self
                .parent
                .keys()
                .map(|&m| (m, self.root(m)))
                .filter(|(m, r)| m != r)
                .collect();
            self.parent = HashMap::default();
            pairs.sort_unstable();
            for (m, r) in pairs {
                each(m, r)?;
            }
            return Ok(0);
        }
        self.write_out()?;
        self.parent = HashMap::default();
        let mut input = std::mem::take(&mut self.edges);
        self.runs.flush(&mut self.buf, &mut input)?;
        let mut rounds = 0;
        loop {
            rounds += 1;
            let large = rounds % 2 == 1;
            match self.round(std::mem::take(&mut input), large)? {
                Round::Stars(leaves) => {
                    let r = read_leaves(&leaves, &mut each);
                    let _ = std::fs::remove_file(&leaves);
                    r?;
                    return Ok(rounds);
                }
                Round::Next(next) => input = next,
            }
        }
    }

    /// One round over `input` (edge runs, deleted): the stars' leaves if `input` is a
    /// forest of stars centred on their smallest nodes, else the next round's edges.
    fn round(&mut self, input: Vec<PathBuf>, large: bool) -> Result<Round, StepError> {
        let leaves_path = self.runs.new_path()?;
        let file = File::create(&leaves_path).map_err(|e| io_err("create", &leaves_path, e))?;
        let mut leaves = BufWriter::with_capacity(64 << 10, file);
        let mut g = Group::default();
        let mut stars = true;
        let mut failed: Option<StepError> = None;
        let mut out = Vec::new();
        let mut emit = |this: &mut Self, a: u128, b: u128| {
            if failed.is_none()
                && let Err(e) = this.push(a, b, &mut out)
            {
                failed = Some(e);
            }
        };
        let mut end_group = |g: &Group, stars: &mut bool| -> std::io::Result<()> {
            if g.first < g.node {
                *stars &= g.distinct == 1;
                leaves.write_all(&g.node.to_le_bytes())?;
                leaves.write_all(&g.first.to_le_bytes())?;
            }
            Ok(())
        };
        let mut io_failed = None;
        let runs = self.runs;
        runs.merge(input, |r| {
            let (u, v) = (r.key, other(&r));
            if g.started && u == g.node {
                if v == g.last {
                    return; // the same edge again
                }
                g.last = v;
                g.distinct += 1;
            } else {
                if g.started
                    && let Err(e) = end_group(&g, &mut stars)
                {
                    io_failed.get_or_insert(e);
                }
                g = Group {
                    started: true,
                    node: u,
                    first: v,
                    last: v,
                    distinct: 1,
                };
            }
            // The smallest of u and its neighbours: its first neighbour, or u.
            let m = g.first.min(u);
            if large {
                if v > u {
                    emit(self, v, m);
                }
            } else if v < u {
                if g.distinct == 1 {
                    emit(self, u, m);
                }
                if v != m {
                    emit(self, v, m);
                }
            }
        })?;
        if g.started
            && let Err(e) = end_group(&g, &mut stars)
        {
            io_failed.get_or_insert(e);
        }
        let flushed = io_failed.map_or_else(|| leaves.flush(), Err);
        drop(leaves);
        if let Some(e) = failed {
            let _ = std::fs::remove_file(&leaves_path);
            return Err(e);
        }
        flushed.map_err(|e| io_err("write", &leaves_path, e))?;
        if stars {
            for f in &out {
                let _ = std::fs::remove_file(f);
            }
            self.buf.clear();
            return Ok(Round::Stars(leaves_path));
        }
        let _ = std::fs::remove_file(&leaves_path);
        self.runs.flush(&mut self.buf, &mut out)?;
        Ok(Round::Next(out))
    }
}

/// The root of `x`'s set in `parent`.
fn root_in(parent: &HashMap<u128, u128, foldhash::fast::RandomState>, x: u128) -> u128 {
    let mut root = x;
    while let Some(&p) = parent.get(&root) {
        if p == root {
            break;
        }
        root = p;
    }
    root
}

/// Bytes of a table with `capacity` usable buckets (hashbrown: a power of two of them,
/// seven eighths usable).
fn table_bytes(capacity: usize) -> u64 {
    (capacity.max(1) * 8 / 7).next_power_of_two() as u64 * SLOT_BYTES
}

enum Round {
    /// The leaves file: (node, root) pairs, 32 bytes each, in node order.
    Stars(PathBuf),
    /// The next round's edge runs.
    Next(Vec<PathBuf>),
}

/// The neighbours of one node as a round reads them.
#[derive(Default)]
struct Group {
    started: bool,
    node: u128,
    /// Its smallest neighbour.
    first: u128,
    last: u128,
    distinct: u64,
}

fn read_leaves(
    path: &std::path::Path,
    each: &mut impl FnMut(u128, u128) -> Result<(), StepError>,
) -> Result<(), StepError> {
    let file = File::open(path).map_err(|e| io_err("open", path, e))?;
    let mut r = BufReader::with_capacity(64 << 10, file);
    let mut b = [0u8; 32];
    loop {
        match r.read_exact(&mut b) {
            Ok(()) => each(
                u128::from_le_bytes(le(&b, 0)),
                u128::from_le_bytes(le(&b, 16)),
            )?,
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(io_err("read", path, e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Random graphs with long chains (many rounds) and big stars: on disk, at budgets
    /// from a few nodes up, the components are those of the union-find in memory.
    #[test]
    fn components_on_disk_are_those_in_memory() {
        let mut next = crate::steps::test_util::xorshift(0x2545_F491_4F6C_DD1D);
        for case in 0..12 {
            let n = [50u64, 400, 3000][case % 3];
            let mut edges: Vec<(u128, u128)> = Vec::new();
            // Chains through shuffled nodes, and random edges.
            let mut perm: Vec<u128> = (0..n).map(|i| u128::from(i) * 7 + 1).collect();
            for i in (1..perm.len()).rev() {
                perm.swap(i, (next() % (i as u64 + 1)) as usize);
            }
            for w in perm.windows(2).step_by(1 + case % 4) {
                edges.push((w[0], w[1]));
            }
            for _ in 0..n / 3 {
                edges.push((perm[(next() % n) as usize], perm[(next() % n) as usize]));
            }
            // Node 0 (the earlier datasets in minhash) joins a few.
            for _ in 0..case % 3 {
                edges.push((0, perm[(next() % n) as usize]));
            }
            let runs = Runs::default();
            let collect = |budget: u64| -> (Vec<(u128, u128)>, usize) {
                let mut c = Components::new(&runs, budget);
                for &(a, b) in &edges {
                    c.union(a, b).expect("union");
                }
                let mut got = Vec::new();
                let rounds = c
                    .finish(|m, r| {
                        got.push((m, r));
                        Ok(())
                    })
                    .expect("finish");
                (got, rounds)
            };
            let (want, r0) = collect(1 << 30);
            assert_eq!(r0, 0);
            assert!(want.windows(2).all(|w| w[0].0 < w[1].0), "in node order");
            for budget in [1u64, 2000, 20_000, 200_000] {
                let (got, rounds) = collect(budget);
                assert!(got == want, "case {case}, n {n}, budget {budget}");
                if budget < 20_000 {
                    assert!(rounds > 0, "case {case}: went to disk");
                }
            }
            let dir: Vec<_> = runs
                .new_path()
                .ok()
                .and_then(|p| p.parent().map(|d| d.to_path_buf()))
                .map(|d| std::fs::read_dir(d).expect("dir").collect())
                .unwrap_or_default();
            assert!(dir.is_empty(), "no file left: {dir:?}");
        }
    }
}
