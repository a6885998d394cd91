//! Which share of the tasks this process runs: `--worker I/N`, or the index and count a
//! scheduler puts in the environment. Tasks are dealt round-robin (task `t` to worker
//! `t % N`) over the stored plan, a pure function of the listing, the pipeline and `N`,
//! so N workers need no coordinator.

use crate::error::{Error, Result};

/// Worker `index` of `count` (0-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Worker {
    pub index: usize,
    pub count: usize,
}

impl Default for Worker {
    fn default() -> Self {
        Worker { index: 0, count: 1 }
    }
}

impl std::fmt::Display for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.is_helper() {
            write!(f, "helper of {}", self.count)
        } else {
            write!(f, "{}/{}", self.index, self.count)
        }
    }
}

/// The variables that name a worker, besides `--worker`: a run with none of them joins
/// a sink in use as a helper ([`Worker::helper`]).
const WORKER_VARS: [&str; 5] = [
    "KILN_WORKER",
    "KILN_WORKERS",
    "SLURM_ARRAY_TASK_ID",
    "JOB_COMPLETION_INDEX",
    "AWS_BATCH_JOB_ARRAY_INDEX",
];

impl Worker {
    /// Parses `I/N`.
    pub fn parse(s: &str) -> Result<Worker> {
        let bad = || {
            Error::Usage(format!(
                "--worker `{s}`: expected INDEX/COUNT with 0 <= INDEX < COUNT, e.g. 0/4"
            ))
        };
        let (i, n) = s.split_once('/').ok_or_else(bad)?;
        let index: usize = i.trim().parse().map_err(|_| bad())?;
        let count: usize = n.trim().parse().map_err(|_| bad())?;
        Worker::new(index, count).ok_or_else(bad)
    }

    fn new(index: usize, count: usize) -> Option<Worker> {
        (count > 0 && index < count).then_some(Worker { index, count })
    }

    /// Whether task `task` is this worker's (never, for a helper).
    pub fn owns(&self, task: usize) -> bool {
        task % self.count == self.index
    }

    /// A run that joins the `count` workers of a sink in use without a share of its own
    /// (a second `kiln run` of the same pipeline, without `--worker`): it runs the tasks
    /// no live run has claimed, as a worker done with its own does. Its index is
    /// `count`, which owns no task and no section.
    pub fn helper(count: usize) -> Worker {
        Worker {
            index: count,
            count,
        }
    }

    /// Whether this is a [`Worker::helper`].
    pub fn is_helper(&self) -> bool {
        self.index >= self.count
    }

    /// Whether nothing names this run's worker: no `--worker` and none of the
    /// schedulers' variables. Such a run may join a sink in use as a helper.
    pub fn anonymous(flag: Option<&str>, env: &dyn Fn(&str) -> Option<String>) -> bool {
        flag.is_none()
            && WORKER_VARS
                .iter()
                .all(|k| env(k).is_none_or(|v| v.trim().is_empty()))
    }

    /// The worker from `--worker`, else from the environment, else the only worker.
    ///
    /// The environment, in order: `KILN_WORKER` + `KILN_WORKERS`; Slurm job arrays
    /// (`SLURM_ARRAY_TASK_ID` of a 0-based array, `SLURM_ARRAY_TASK_COUNT`);
    /// Kubernetes Indexed Jobs (`JOB_COMPLETION_INDEX`) and AWS Batch array jobs
    /// (`AWS_BATCH_JOB_ARRAY_INDEX`, with `AWS_BATCH_JOB_ARRAY_SIZE` when set), whose
    /// count is not in the environment and comes from `KILN_WORKERS`. `KILN_WORKERS`
    /// also overrides a scheduler's count, which can be wrong on a resubmission (a
    /// Slurm array resubmitted as `--array=2` reports a count of 1).
    pub fn resolve(flag: Option<&str>, env: &dyn Fn(&str) -> Option<String>) -> Result<Worker> {
        if let Some(f) = flag {
            return Worker::parse(f);
        }
        let num =
            |k: &str| -> Result<Option<usize>> {
                match env(k).filter(|v| !v.trim().is_empty()) {
                    None => Ok(None),
                    Some(v) => v.trim().parse().map(Some).map_err(|_| {
                        Error::Usage(format!("{k}=`{v}` is not a non-negative integer"))
                    }),
                }
            };
        let explicit_count = num("KILN_WORKERS")?;
        let (source, index, count) = if let Some(i) = num("KILN_WORKER")? {
            ("KILN_WORKER", i, explicit_count)
        } else if let Some(i) = num("SLURM_ARRAY_TASK_ID")? {
            // The ID itself, not ID − SLURM_ARRAY_TASK_MIN: a resubmitted index
            // (`--array=5`) has MIN = 5, which would make every resubmission worker 0.
            // So arrays are 0-based: `--array=0-(N-1)`.
            (
                "SLURM_ARRAY_TASK_ID",
                i,
                explicit_count.or(num("SLURM_ARRAY_TASK_COUNT")?),
            )
        } else if let Some(i) = num("JOB_COMPLETION_INDEX")? {
            ("JOB_COMPLETION_INDEX", i, explicit_count)
        } else if let Some(i) = num("AWS_BATCH_JOB_ARRAY_INDEX")? {
            (
                "AWS_BATCH_JOB_ARRAY_INDEX",
                i,
                explicit_count.or(num("AWS_BATCH_JOB_ARRAY_SIZE")?),
            )
        } else {
            return match explicit_count {
                None | Some(1) => Ok(Worker::default()),
                Some(n) => Err(Error::Usage(format!(
                    "KILN_WORKERS={n} without a worker index; set KILN_WORKER or pass --worker I/{n}"
                ))),
            };
        };
        let count = count.ok_or_else(|| {
            Error::Usage(format!(
                "{source}={index} gives this worker's index but not the number of workers; \
                 set KILN_WORKERS (e.g. to the job's completions or array size) or pass \
                 --worker {index}/N"
            ))
        })?;
        Worker::new(index, count).ok_or_else(|| {
            Error::Usage(format!(
                "worker index {index} (from {source}) is not below the worker count {count}"
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    fn w(index: usize, count: usize) -> Worker {
        Worker { index, count }
    }

    #[test]
    fn flag_and_schedulers() {
        assert_eq!(
            Worker::resolve(Some("2/4"), &env(&[])).expect("ok"),
            w(2, 4)
        );
        assert!(Worker::resolve(Some("4/4"), &env(&[])).is_err());
        assert!(Worker::resolve(Some("x"), &env(&[])).is_err());
        assert_eq!(Worker::resolve(None, &env(&[])).expect("ok"), w(0, 1));
        assert_eq!(
            Worker::resolve(None, &env(&[("KILN_WORKER", "1"), ("KILN_WORKERS", "3")]))
                .expect("ok"),
            w(1, 3)
        );
        let slurm = [
            ("SLURM_ARRAY_TASK_ID", "3"),
            ("SLURM_ARRAY_TASK_MIN", "0"),
            ("SLURM_ARRAY_TASK_COUNT", "4"),
        ];
        assert_eq!(Worker::resolve(None, &env(&slurm)).expect("ok"), w(3, 4));
        // A resubmitted index (`--array=2`) reports MIN 2 and a count of 1; the ID and
        // KILN_WORKERS say the truth.
        let resubmitted = [
            ("SLURM_ARRAY_TASK_ID", "2"),
            ("SLURM_ARRAY_TASK_MIN", "2"),
            ("SLURM_ARRAY_TASK_COUNT", "1"),
            ("KILN_WORKERS", "4"),
        ];
        assert_eq!(
            Worker::resolve(None, &env(&resubmitted)).expect("ok"),
            w(2, 4)
        );
        // Without KILN_WORKERS the resubmission's count of 1 cannot hold index 2.
        assert!(Worker::resolve(None, &env(&resubmitted[..3])).is_err());
        assert_eq!(
            Worker::resolve(
                None,
                &env(&[("JOB_COMPLETION_INDEX", "2"), ("KILN_WORKERS", "3")])
            )
            .expect("ok"),
            w(2, 3)
        );
        let err =
            Worker::resolve(None, &env(&[("JOB_COMPLETION_INDEX", "2")])).expect_err("no count");
        assert!(err.to_string().contains("KILN_WORKERS"), "{err}");
        assert_eq!(
            Worker::resolve(
                None,
                &env(&[
                    ("AWS_BATCH_JOB_ARRAY_INDEX", "1"),
                    ("AWS_BATCH_JOB_ARRAY_SIZE", "2")
                ])
            )
            .expect("ok"),
            w(1, 2)
        );
    }

    #[test]
    fn a_helper_owns_no_task_and_an_anonymous_run_names_no_worker() {
        let h = Worker::helper(3);
        assert!(h.is_helper() && !w(2, 3).is_helper());
        assert!((0..30).all(|t| !h.owns(t)));
        assert_eq!(h.to_string(), "helper of 3");
        assert!(Worker::anonymous(None, &env(&[])));
        assert!(Worker::anonymous(None, &env(&[("KILN_WORKERS", " ")])));
        assert!(!Worker::anonymous(Some("0/1"), &env(&[])));
        assert!(!Worker::anonymous(
            None,
            &env(&[("SLURM_ARRAY_TASK_ID", "0")])
        ));
    }

    #[test]
    fn tasks_are_dealt_round_robin() {
        let owned: Vec<Vec<usize>> = (0..3)
            .map(|i| (0..8).filter(|t| w(i, 3).owns(*t)).collect())
            .collect();
        assert_eq!(owned, [vec![0, 3, 6], vec![1, 4, 7], vec![2, 5]]);
    }
}
