//! Typed errors and the exit codes they map to (DESIGN §2).
//!
//! Every variant carries the place a user has to look at: the pipeline file, the object,
//! the line, the step. `main` prints the error and exits with [`Error::exit_code`].

use std::fmt;

/// The result type used across kiln.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Exit code: the run succeeded.
pub const EXIT_OK: i32 = 0;
/// Exit code: the run failed (bad input data, I/O, a bug).
pub const EXIT_FAILED: i32 = 1;
/// Exit code: the pipeline file or the command line is wrong; nothing was written.
pub const EXIT_USAGE: i32 = 2;
/// Exit code: the run finished but skipped bad input beyond `max_error_ratio`.
pub const EXIT_TOO_MANY_ERRORS: i32 = 3;
/// Exit code (EX_TEMPFAIL): retryable; running the same command again resumes.
pub const EXIT_RETRY: i32 = 75;

/// Every error kiln reports to a user.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The pipeline file could not be read or does not describe a valid pipeline.
    #[error("{file}: {message}")]
    Spec { file: String, message: String },

    /// A `--set` override or another command-line value is wrong.
    #[error("{0}")]
    Usage(String),

    /// The pipeline is well-formed but cannot run on this input: unknown column, type
    /// mismatch, no matching objects, a sink that holds another pipeline's output.
    #[error("{0}")]
    Plan(String),

    /// One step's options or expression do not fit the data.
    #[error("step {index} `{step}`: {message}")]
    Step {
        index: usize,
        step: String,
        message: String,
    },

    /// Input data is malformed: the object, and where known the line, say where.
    #[error("{object}{}: {message}", line.map(|l| format!(" line {l}")).unwrap_or_default())]
    Input {
        object: String,
        line: Option<u64>,
        message: String,
    },

    /// A storage operation failed.
    #[error("{op} {location}: {source}")]
    Store {
        op: &'static str,
        location: String,
        #[source]
        source: object_store::Error,
    },

    /// Writing a shard or a commit record failed.
    #[error("sink {location}: {message}")]
    Sink { location: String, message: String },

    /// The run was stopped by a signal; running the same command again resumes.
    #[error("stopped by {0}; run the same command again to resume")]
    Interrupted(&'static str),

    /// A bug or an unexpected condition inside kiln.
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    /// The process exit code for this error (DESIGN §2).
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Spec { .. } | Error::Usage(_) | Error::Plan(_) | Error::Step { .. } => {
                EXIT_USAGE
            }
            Error::Interrupted(_) => EXIT_RETRY,
            Error::Store { source, .. } if is_retryable(source) => EXIT_RETRY,
            _ => EXIT_FAILED,
        }
    }

    pub(crate) fn store(
        op: &'static str,
        location: impl fmt::Display,
        source: object_store::Error,
    ) -> Self {
        Error::Store {
            op,
            location: location.to_string(),
            source,
        }
    }

    pub(crate) fn input(
        object: impl fmt::Display,
        line: Option<u64>,
        message: impl fmt::Display,
    ) -> Self {
        Error::Input {
            object: object.to_string(),
            line,
            message: message.to_string(),
        }
    }

    pub(crate) fn sink(location: impl fmt::Display, message: impl fmt::Display) -> Self {
        Error::Sink {
            location: location.to_string(),
            message: message.to_string(),
        }
    }
}

/// Network-shaped store errors are worth retrying by running the command again.
fn is_retryable(e: &object_store::Error) -> bool {
    matches!(e, object_store::Error::Generic { .. }) && {
        let s = e.to_string();
        s.contains("timed out") || s.contains("connection") || s.contains("Server error")
    }
}
