//! Typed errors and the exit codes they map to (README "Commands").
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

    /// A step failed on the data of `object` (for a full-pass step's decision over the
    /// whole input, `object` says so). The step's error says what and where.
    #[error("{object}: step {index} `{step}`{}: {source}",
        row.map(|(task, row)| format!(" (row {row} of task {task} at this step)")).unwrap_or_default())]
    StepFailed {
        object: String,
        index: usize,
        step: String,
        /// The failing row, when the step named it: (task, 1-based row among the rows
        /// of the task that reach the step).
        row: Option<(usize, u64)>,
        #[source]
        source: Box<StepError>,
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

    /// Another live run holds what this one needs (the same worker's share of the sink,
    /// or the sink `--overwrite` would delete); running again once it is done helps.
    #[error("{0}")]
    Busy(String),

    /// The run was stopped by a signal; running the same command again resumes.
    #[error("stopped by {0}; run the same command again to resume")]
    Interrupted(&'static str),

    /// Writing a command's output to stdout failed (a closed pipe, a full disk).
    #[error("cannot write to stdout: {0}")]
    Output(#[source] std::io::Error),

    /// A bug or an unexpected condition inside kiln.
    #[error("internal error: {0}")]
    Internal(String),
}

// ---- A step's failure -----------------------------------------------------------------
//
// What a running step returns when it fails: the kind of failure, and where, when the
// step knows it: the column and the row of the batch. The runtime adds the object and
// the step's place in the pipeline ([`Error::StepFailed`]). Helpers inside a step may
// keep returning `Result<_, String>`: `?` turns their message into a
// [`StepErrorKind::Data`] error, the common case (a value the step cannot take).

/// The kind of a step's failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StepErrorKind {
    /// A value the step cannot take: bad input. A row-local step's bad rows are left
    /// out under `on_error: skip | dead_letter`; otherwise the run fails (exit 1).
    Data,
    /// A file the step reads or writes besides the data (a spill file) failed.
    Io,
    /// A bug or an unexpected condition inside kiln.
    Internal,
}

/// A step's failure on a batch (see the module docs).
#[derive(Debug)]
pub struct StepError {
    pub kind: StepErrorKind,
    /// The column whose value failed, when the step knows it.
    pub column: Option<String>,
    /// The failing row's index in the batch the step was given, when it knows it.
    pub row: Option<usize>,
    pub message: String,
    pub source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl StepError {
    /// A value the step cannot take.
    pub fn data(message: impl fmt::Display) -> Self {
        Self::new(StepErrorKind::Data, message)
    }

    /// A file besides the data failed.
    pub fn io(message: impl fmt::Display, source: std::io::Error) -> Self {
        StepError {
            source: Some(Box::new(source)),
            ..Self::new(StepErrorKind::Io, message)
        }
    }

    /// A bug inside kiln.
    pub fn internal(message: impl fmt::Display) -> Self {
        Self::new(StepErrorKind::Internal, message)
    }

    fn new(kind: StepErrorKind, message: impl fmt::Display) -> Self {
        StepError {
            kind,
            column: None,
            row: None,
            message: message.to_string(),
            source: None,
        }
    }

    /// The same error, naming the column.
    #[must_use]
    pub fn in_column(mut self, column: impl Into<String>) -> Self {
        self.column = Some(column.into());
        self
    }

    /// The same error, naming the row of the batch.
    #[must_use]
    pub fn at_row(mut self, row: usize) -> Self {
        self.row = Some(row);
        self
    }
}

impl fmt::Display for StepError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.kind == StepErrorKind::Internal {
            f.write_str("internal error: ")?;
        }
        if let Some(c) = &self.column {
            write!(f, "column `{c}`: ")?;
        }
        f.write_str(&self.message)?;
        if let Some(s) = &self.source {
            write!(f, ": {s}")?;
        }
        Ok(())
    }
}

impl std::error::Error for StepError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|s| s as &(dyn std::error::Error + 'static))
    }
}

impl From<String> for StepError {
    fn from(message: String) -> Self {
        StepError::data(message)
    }
}

impl From<&str> for StepError {
    fn from(message: &str) -> Self {
        StepError::data(message)
    }
}

impl From<arrow::error::ArrowError> for StepError {
    fn from(e: arrow::error::ArrowError) -> Self {
        StepError::data(e)
    }
}

impl Error {
    /// The process exit code for this error (README "Commands").
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Spec { .. } | Error::Usage(_) | Error::Plan(_) | Error::Step { .. } => {
                EXIT_USAGE
            }
            Error::Interrupted(_) | Error::Busy(_) => EXIT_RETRY,
            // Bad data, a spill disk that filled up and a bug all fail the run; none is
            // helped by running it again as it is.
            Error::StepFailed { source, .. } => match source.kind {
                StepErrorKind::Data | StepErrorKind::Io | StepErrorKind::Internal => EXIT_FAILED,
            },
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

    /// Step `index` (0-based) named `step` failed on the data of `object` (at `row`, see
    /// [`Error::StepFailed`]).
    pub(crate) fn step_failed(
        object: impl fmt::Display,
        index: usize,
        step: &str,
        row: Option<(usize, u64)>,
        mut source: StepError,
    ) -> Self {
        source.message = capped(std::mem::take(&mut source.message));
        Error::StepFailed {
            object: object.to_string(),
            index: index + 1,
            step: step.to_string(),
            row,
            source: Box::new(source),
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
            message: capped(message.to_string()),
        }
    }

    /// A failed read of an input object. A storage failure underneath (the reader
    /// wraps object_store's error in the `io::Error`) stays a store error, so its exit
    /// code says whether running again may help; anything else is bad input (a corrupt
    /// compressed stream, invalid bytes).
    pub(crate) fn read(object: impl fmt::Display, line: Option<u64>, e: std::io::Error) -> Self {
        if let Some(cut) = e.get_ref().and_then(|inner| inner.downcast_ref::<BadCut>()) {
            return Error::Plan(format!("{object}: {cut}"));
        }
        if let Some(long) = e
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<RecordTooLong>())
        {
            return Error::input(object, Some(long.line), long);
        }
        if !e
            .get_ref()
            .is_some_and(|inner| inner.is::<object_store::Error>())
        {
            return Error::input(object, line, format!("cannot read: {e}"));
        }
        match e
            .into_inner()
            .map(|inner| inner.downcast::<object_store::Error>())
        {
            Some(Ok(store)) => Error::store("read", object, *store),
            Some(Err(other)) => Error::input(object, line, format!("cannot read: {other}")),
            None => Error::input(object, line, "cannot read"),
        }
    }

    /// An error that names a record quotes at most this much of it: a message from a
    /// decoder can echo the whole value (a 200 MB line, 2 MB of NUL bytes).
    pub const MAX_MESSAGE: usize = 2048;

    pub(crate) fn sink(location: impl fmt::Display, message: impl fmt::Display) -> Self {
        Error::Sink {
            location: location.to_string(),
            message: message.to_string(),
        }
    }
}

/// Store errors that running the command again may get past: throttling, 5xx, timeouts
/// and broken connections, after object_store's own retries gave up (exit 75).
/// Not found, access denied and bad requests are not: they need a person.
fn is_retryable(e: &object_store::Error) -> bool {
    if !matches!(e, object_store::Error::Generic { .. }) {
        return false;
    }
    // A failure of the HTTP exchange itself says its kind (object_store classifies
    // reqwest's and hyper's errors): connecting, sending, a timeout, a broken body.
    if let Some(kind) = http_error_kind(e) {
        use object_store::client::HttpErrorKind as K;
        match kind {
            K::Connect | K::Request | K::Timeout | K::Interrupted | K::Decode => return true,
            _ => {}
        }
    }
    // A status is known only from the message: object_store's `RetryError`, which
    // holds it, is not nameable outside the crate.
    let s = e.to_string();
    let status = s
        .split("status code: ")
        .nth(1)
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse::<u16>().ok());
    match status {
        Some(code) => code >= 500 || code == 429 || code == 408,
        None => [
            "timed out",
            "timeout",
            "connection",
            "Connect",
            "error sending request",
            "error decoding response body",
            "SlowDown",
            "reset",
        ]
        .iter()
        .any(|needle| s.contains(needle)),
    }
}

/// The kind of the HTTP error under `e`, if its source chain holds one.
fn http_error_kind(e: &object_store::Error) -> Option<object_store::client::HttpErrorKind> {
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(h) = s.downcast_ref::<object_store::client::HttpError>() {
            return Some(h.kind());
        }
        source = s.source();
    }
    None
}

/// `message` cut at [`Error::MAX_MESSAGE`] bytes (on a character boundary), saying how
/// long it was; the dead letter and the line number find the rest.
fn capped(mut message: String) -> String {
    if message.len() <= Error::MAX_MESSAGE {
        return message;
    }
    let all = message.len();
    let mut end = Error::MAX_MESSAGE;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    message.truncate(end);
    message.push_str(&format!("… (message cut: {all} bytes in all)"));
    message
}

/// A line longer than the decoders' bound (`formats::DecodeContext::max_record_bytes`):
/// `formats::LineBound` stops there and carries this inside its `io::Error`.
#[derive(Debug)]
pub struct RecordTooLong {
    /// 1-based line.
    pub line: u64,
    pub max: u64,
}

impl std::fmt::Display for RecordTooLong {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "a record longer than {} (a quarter of each thread's share of run.memory_limit) \
             is not read; raise run.memory_limit if it is real data",
            bytesize::ByteSize(self.max).display().iec()
        )
    }
}

impl std::error::Error for RecordTooLong {}

/// A CSV slice's cut fell inside a quoted field (at this byte of the object). Not a fault
/// of the object, which is fine read whole: under any `on_error` it ends the run, since
/// the next slice started mid-record.
#[derive(Debug)]
pub struct BadCut(pub u64);

impl std::fmt::Display for BadCut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the object is split into slices of run.task_bytes and a quoted field holds the \
             line break at byte {} where the next slice starts; set `source.split: false` (or \
             raise run.task_bytes past the object's size) to read it whole",
            self.0
        )
    }
}

impl std::error::Error for BadCut {}

#[cfg(test)]
mod tests {
    use super::*;

    fn generic(msg: &str) -> object_store::Error {
        object_store::Error::Generic {
            store: "S3",
            source: msg.into(),
        }
    }

    #[test]
    fn throttling_and_server_errors_are_retryable() {
        let e = |m: &str| Error::store("read", "s3://b/k", generic(m)).exit_code();
        assert_eq!(
            e(
                "Error performing GET http://h/b/k in 3s, after 10 retries - Server returned \
               non-2xx status code: 503 Service Unavailable: SlowDown"
            ),
            EXIT_RETRY
        );
        assert_eq!(e("HTTP error: error sending request"), EXIT_RETRY);
        assert_eq!(
            e("Server returned non-2xx status code: 403 Forbidden: AccessDenied"),
            EXIT_FAILED
        );
        let not_found = object_store::Error::NotFound {
            path: "k".into(),
            source: "gone".into(),
        };
        assert_eq!(
            Error::store("read", "s3://b/k", not_found).exit_code(),
            EXIT_FAILED
        );
    }

    #[test]
    fn an_http_failure_is_retryable_by_its_kind_not_its_text() {
        use object_store::client::{HttpError, HttpErrorKind};
        let e = |kind| {
            let io = std::io::Error::other("no words a text match would find");
            let source = Box::new(HttpError::new(kind, io));
            Error::store(
                "read",
                "s3://b/k",
                object_store::Error::Generic {
                    store: "S3",
                    source,
                },
            )
            .exit_code()
        };
        assert_eq!(e(HttpErrorKind::Timeout), EXIT_RETRY);
        assert_eq!(e(HttpErrorKind::Connect), EXIT_RETRY);
        assert_eq!(e(HttpErrorKind::Interrupted), EXIT_RETRY);
        assert_eq!(e(HttpErrorKind::Unknown), EXIT_FAILED);
    }

    #[test]
    fn a_message_that_quotes_a_huge_value_is_cut() {
        let e = Error::input(
            "a.csv",
            Some(3),
            format!("bad value `{}`", "é".repeat(1 << 20)),
        );
        let text = e.to_string();
        assert!(text.len() < Error::MAX_MESSAGE + 200, "{}", text.len());
        assert!(
            text.ends_with("bytes in all)"),
            "{}",
            &text[text.len() - 80..]
        );
        assert!(
            text.starts_with("a.csv line 3: bad value `éé"),
            "{}",
            &text[..40]
        );
    }

    #[test]
    fn a_failed_step_says_where_and_its_kind_decides_the_exit_code() {
        let e = Error::step_failed(
            "s3://b/a.jsonl",
            1,
            "tokenize",
            Some((3, 17)),
            StepError::data("cannot tokenize: bad").in_column("text"),
        );
        assert_eq!(
            e.to_string(),
            "s3://b/a.jsonl: step 2 `tokenize` (row 17 of task 3 at this step): column `text`: cannot tokenize: bad"
        );
        assert_eq!(e.exit_code(), EXIT_FAILED);
        let spill = Error::step_failed(
            "the whole input (the full pass)",
            0,
            "dedup.exact",
            None,
            StepError::io("cannot write the spill file", std::io::Error::other("full")),
        );
        assert_eq!(spill.exit_code(), EXIT_FAILED);
        assert!(
            std::error::Error::source(&spill).is_some(),
            "the chain is kept"
        );
    }

    #[test]
    fn a_step_error_names_its_column_and_source_once() {
        let e = StepError::io(
            "cannot write the spill file",
            std::io::Error::other("disk full"),
        )
        .in_column("text");
        assert_eq!(
            e.to_string(),
            "column `text`: cannot write the spill file: disk full"
        );
        assert_eq!(e.kind, StepErrorKind::Io);
        let m: StepError = String::from("not a number").into();
        assert_eq!(m.kind, StepErrorKind::Data);
        assert_eq!(
            StepError::internal("a part of another type").to_string(),
            "internal error: a part of another type"
        );
    }
}
