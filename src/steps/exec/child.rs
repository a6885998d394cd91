//! One child process of an `exec` step and the frames it speaks.
//!
//! A frame is `KILN`, a one-byte tag and a little-endian u64 length, then that many
//! bytes. kiln sends `B` frames (a batch as an Arrow IPC stream: schema, one batch, end);
//! the child answers each with one `B` frame (the output batch, same encoding) or one `E`
//! frame (UTF-8 text, a traceback: the batch failed). A child may first say `H` (hello:
//! it is ready; `shm` if it uses the two memfd files kiln offers as its descriptors 3 and
//! 4); from then on kiln writes each request into the first file and sends an `M` frame
//! with its length, and the child answers with an `M` frame for its answer in the
//! second. Anything else on the child's stdout is a protocol error, which names the
//! bytes (a program that printed to its stdout).
//!
//! Three threads serve each child, so that a call can time out whatever the child does:
//! one writes requests to its stdin, one reads frames from its stdout, one forwards its
//! stderr to kiln's log line by line (and keeps the last lines for the error of a crash).
//! Killing the child ends all three. The child is started by [`kiln_child::spawn_tied`],
//! so it dies with kiln even under `kill -9`; and it ends when its stdin closes, which is
//! how a run ends it.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::AsRawFd;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arrow::record_batch::RecordBatch;
use kiln_child::SharedFile;

use crate::pool::lock;

const MAGIC: &[u8; 4] = b"KILN";
const HEADER: usize = 13;
/// A batch, either way.
const TAG_BATCH: u8 = b'B';
/// The child's error for one batch: its text.
const TAG_ERROR: u8 = b'E';
/// A batch in the shared file of its direction: the payload is its length (u64).
const TAG_SHARED: u8 = b'M';
/// From the child, before any answer: `shm` if it reads and writes shared files.
const TAG_HELLO: u8 = b'H';
/// The environment variable that offers a child the shared files (descriptors 3, 4).
const SHM_ENV: &str = "KILN_EXEC_SHM";
/// The pipe buffer asked for each way (Linux's default limit for a process without
/// CAP_SYS_RESOURCE).
const PIPE_BYTES: usize = 1 << 20;
/// How much longer than `timeout` a child's first call may take: the child's start (an
/// interpreter and its imports, slow on a loaded machine) is not the batch's time. A
/// child that says hello when it is ready gets `timeout` from then instead.
const STARTUP: Duration = Duration::from_secs(60);
/// Lines of a child's stderr kept for the error of a crash.
const STDERR_TAIL: usize = 30;

/// How to start a child.
#[derive(Debug)]
pub(super) struct Launch {
    /// The step and what it runs (`exec steps.py:clean`), for log lines.
    pub label: String,
    pub command: Vec<String>,
    pub env: Vec<(String, String)>,
}

/// What a child answered for one batch.
pub(super) enum Reply {
    /// An Arrow IPC stream.
    Batch(Vec<u8>),
    /// The child's error text for the batch.
    Raised(String),
}

/// A frame from the child, as its stdout carries it.
enum Incoming {
    Batch(Vec<u8>),
    Raised(String),
    /// An Arrow IPC stream of this many bytes in the answers' shared file.
    Shared(u64),
    /// What the child can do (`shm`), said once before its answers.
    Hello(Vec<u8>),
}

/// Why a call got no answer.
pub(super) enum Fault {
    /// The child exited or closed its stdout (its exit status and last stderr lines).
    Crashed(String),
    /// No answer within the timeout.
    Hung(Duration),
    /// The child wrote something that is not a frame.
    Protocol(String),
}

impl std::fmt::Display for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Fault::Crashed(m) => write!(f, "the child process ended: {m}"),
            Fault::Hung(t) => write!(
                f,
                "the child process gave no answer within {} (`timeout:` of the step)",
                humantime::format_duration(*t)
            ),
            Fault::Protocol(m) => write!(f, "{m}"),
        }
    }
}

/// The variables that size numeric libraries' thread pools, set to 1 for the children.
const THREAD_VARS: [&str; 3] = ["OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"];

/// A running child.
pub(super) struct Process {
    pub id: usize,
    child: Child,
    /// Requests to the writing thread; dropped to close the child's stdin.
    requests: Option<SyncSender<Vec<u8>>>,
    replies: Receiver<Result<Incoming, Fault>>,
    stderr: Arc<Mutex<VecDeque<String>>>,
    /// The two shared files (requests, answers), where the system has them.
    shared: Option<(SharedFile, SharedFile)>,
    /// Set by the reading thread when the child says it uses them.
    speaks_shared: Arc<AtomicBool>,
    /// True once the child has answered a call (it has started).
    answered: bool,
}

impl Process {
    pub fn start(launch: &Launch, id: usize) -> std::io::Result<Process> {
        let mut command = Command::new(&launch.command[0]);
        command.args(&launch.command[1..]);
        // One child per thread already fills the cores: a numeric library's own thread
        // pool in every child (OpenBLAS, MKL, OpenMP: numpy, torch) would only fight
        // over them, so each gets one thread unless kiln's environment or `env:` says.
        for var in THREAD_VARS {
            if std::env::var_os(var).is_none() {
                command.env(var, "1");
            }
        }
        command
            .envs(launch.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // Batches go through two in-memory files the child maps (no pipe copies), when
        // the child says it can (a hello frame); until then, and for any other child,
        // through the pipes.
        let shared = match (
            SharedFile::new("kiln-exec-in"),
            SharedFile::new("kiln-exec-out"),
        ) {
            (Ok(a), Ok(b)) => Some((a, b)),
            _ => None,
        };
        let passed = match &shared {
            Some((a, b)) => {
                command.env(SHM_ENV, "3,4");
                vec![a.file().try_clone()?, b.file().try_clone()?]
            }
            None => Vec::new(),
        };
        let mut child = kiln_child::spawn_tied_with(command, passed)?;
        let missing = || std::io::Error::other("a pipe to the child was not opened");
        let stdin = child.stdin.take().ok_or_else(missing)?;
        let stdout = child.stdout.take().ok_or_else(missing)?;
        let stderr = child.stderr.take().ok_or_else(missing)?;
        // Batches are megabytes: wide pipes move them in fewer, larger steps. A kernel
        // that refuses keeps the default size, which only costs speed.
        for fd in [stdin.as_raw_fd(), stdout.as_raw_fd()] {
            let _ = kiln_child::widen_pipe(&fd, PIPE_BYTES);
        }

        let (requests, to_write) = sync_channel::<Vec<u8>>(1);
        let (answer, replies) = sync_channel(1);
        let name = |what: &str| format!("kiln-exec-{id}-{what}");
        std::thread::Builder::new()
            .name(name("in"))
            .spawn(move || write_requests(stdin, to_write))?;
        let speaks_shared = Arc::new(AtomicBool::new(false));
        let hello = speaks_shared.clone();
        std::thread::Builder::new()
            .name(name("out"))
            .spawn(move || read_frames(stdout, answer, &hello))?;
        let tail = Arc::new(Mutex::new(VecDeque::new()));
        let (kept, label) = (tail.clone(), launch.label.clone());
        std::thread::Builder::new()
            .name(name("err"))
            .spawn(move || forward_stderr(stderr, &label, id, &kept))?;
        Ok(Process {
            id,
            child,
            requests: Some(requests),
            replies,
            stderr: tail,
            shared,
            speaks_shared,
            answered: false,
        })
    }

    /// Sends one batch frame and waits for the answer, at most `timeout`.
    pub fn call(&mut self, batch: &RecordBatch, timeout: Duration) -> Result<Reply, Fault> {
        let started = Instant::now();
        let encoded = match &mut self.shared {
            Some((requests, _)) if self.speaks_shared.load(Ordering::Acquire) => {
                write_shared(requests, batch).map(shared_frame)
            }
            _ => batch_frame(batch),
        };
        let frame = encoded.map_err(|e| Fault::Protocol(format!("encoding the batch: {e}")))?;
        let sent = self.requests.as_ref().map(|r| r.send(frame));
        if !matches!(sent, Some(Ok(()))) {
            return Err(self.crashed());
        }
        // A child's start (an interpreter, its imports) is not the batch's time: its first
        // call may take STARTUP longer, or until it says hello, from when the batch's own
        // `timeout` runs.
        let mut deadline = started
            + timeout
            + if self.answered {
                Duration::ZERO
            } else {
                STARTUP
            };
        let incoming = loop {
            match self
                .replies
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            {
                Ok(Ok(Incoming::Hello(_))) => deadline = Instant::now() + timeout,
                other => break other,
            }
        };
        let reply = self.answer(incoming, started);
        if reply.is_ok() {
            self.answered = true;
        }
        reply
    }

    /// What a call gets from what the reading thread handed on.
    fn answer(
        &mut self,
        incoming: Result<Result<Incoming, Fault>, RecvTimeoutError>,
        started: Instant,
    ) -> Result<Reply, Fault> {
        match incoming {
            Ok(Ok(Incoming::Shared(len))) => match &mut self.shared {
                Some((_, answers)) => {
                    let read = usize::try_from(len)
                        .map_err(std::io::Error::other)
                        .and_then(|n| answers.read_start(n));
                    match read {
                        Ok(ipc) => Ok(Reply::Batch(ipc)),
                        Err(e) => Err(Fault::Protocol(format!(
                            "the child's answer of {len} bytes is not in the shared file: {e}"
                        ))),
                    }
                }
                None => Err(Fault::Protocol(
                    "the child answered through a shared file kiln did not give it".into(),
                )),
            },
            Ok(Ok(Incoming::Batch(ipc))) => Ok(Reply::Batch(ipc)),
            Ok(Ok(Incoming::Raised(text))) => Ok(Reply::Raised(text)),
            Ok(Ok(Incoming::Hello(_))) => {
                Err(Fault::Protocol("a hello frame after answers".into()))
            }
            Ok(Err(Fault::Crashed(_))) | Err(RecvTimeoutError::Disconnected) => Err(self.crashed()),
            Ok(Err(fault)) => Err(fault),
            Err(RecvTimeoutError::Timeout) => Err(Fault::Hung(started.elapsed())),
        }
    }

    /// The fault of a child that stopped answering: its exit status (once it has one)
    /// and the last lines of its stderr.
    fn crashed(&mut self) -> Fault {
        let deadline = Instant::now() + Duration::from_secs(2);
        let status = loop {
            match self.child.try_wait() {
                Ok(Some(status)) => break Some(status),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10))
                }
                _ => break None,
            }
        };
        // The stderr thread may still be reading the last lines.
        std::thread::sleep(Duration::from_millis(50));
        let tail: Vec<String> = lock(&self.stderr).iter().cloned().collect();
        let status = match status {
            Some(s) => describe_status(s),
            None => "it closed its stdout".to_string(),
        };
        Fault::Crashed(if tail.is_empty() {
            format!("{status}; it wrote nothing to stderr")
        } else {
            format!(
                "{status}; the last lines of its stderr:\n{}",
                tail.join("\n")
            )
        })
    }

    /// Ends the child now (a hung or broken one).
    pub fn kill(mut self) {
        self.requests.take();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Closes the child's stdin: a well-behaved child exits.
    pub fn hang_up(&mut self) {
        self.requests.take();
    }

    /// Ends the child as a run ends it: stdin closed, a moment to exit, then killed.
    fn close(&mut self) {
        self.hang_up();
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.close();
    }
}

#[cfg(unix)]
fn describe_status(s: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (s.code(), s.signal()) {
        (Some(code), _) => format!("it exited with status {code}"),
        (None, Some(signal)) => format!("it was killed by signal {signal}"),
        _ => format!("it ended ({s})"),
    }
}

#[cfg(not(unix))]
fn describe_status(s: std::process::ExitStatus) -> String {
    format!("it ended ({s})")
}

fn write_requests(mut stdin: ChildStdin, requests: Receiver<Vec<u8>>) {
    for frame in requests {
        if stdin
            .write_all(&frame)
            .and_then(|()| stdin.flush())
            .is_err()
        {
            // The child is gone: the reading thread reports it.
            return;
        }
    }
}

fn read_frames(
    stdout: impl Read,
    answers: SyncSender<Result<Incoming, Fault>>,
    speaks_shared: &AtomicBool,
) {
    let mut stdout = BufReader::with_capacity(1 << 20, stdout);
    loop {
        let reply = read_frame(&mut stdout);
        // A hello goes on too: the call waiting for the child's first answer times the
        // batch from it.
        if let Ok(Incoming::Hello(what)) = &reply
            && what == b"shm"
        {
            speaks_shared.store(true, Ordering::Release);
        }
        let last = reply.is_err();
        if answers.send(reply).is_err() || last {
            return;
        }
    }
}

/// One frame from the child.
fn read_frame(r: &mut impl Read) -> Result<Incoming, Fault> {
    let mut head = [0u8; HEADER];
    let mut got = 0;
    while got < HEADER {
        match r.read(&mut head[got..]) {
            Ok(0) if got == 0 => return Err(Fault::Crashed(String::new())),
            Ok(0) => return Err(not_a_frame(&head[..got])),
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Fault::Crashed(e.to_string())),
        }
    }
    if &head[..4] != MAGIC || !matches!(head[4], TAG_BATCH | TAG_ERROR | TAG_SHARED | TAG_HELLO) {
        return Err(not_a_frame(&head));
    }
    let mut len = [0u8; 8];
    len.copy_from_slice(&head[5..]);
    let len = u64::from_le_bytes(len);
    // The length is the child's word: reserve what a batch plausibly is, grow past it.
    let mut payload = Vec::with_capacity(len.min(1 << 30) as usize);
    let read = r.take(len).read_to_end(&mut payload);
    if read.is_err() || payload.len() as u64 != len {
        return Err(Fault::Crashed(String::new()));
    }
    Ok(match head[4] {
        TAG_BATCH => Incoming::Batch(payload),
        TAG_HELLO => Incoming::Hello(payload),
        TAG_SHARED => match <[u8; 8]>::try_from(payload.as_slice()) {
            Ok(len) => Incoming::Shared(u64::from_le_bytes(len)),
            Err(_) => return Err(not_a_frame(&head)),
        },
        _ => Incoming::Raised(String::from_utf8_lossy(&payload).into_owned()),
    })
}

fn not_a_frame(bytes: &[u8]) -> Fault {
    Fault::Protocol(format!(
        "the child wrote {:?} to its stdout, which is not a kiln frame: stdout carries the \
         batches, so the program must not print there (`python -m kiln.step` sends print() \
         to stderr; another program must write its own output to stderr)",
        String::from_utf8_lossy(bytes)
    ))
}

fn forward_stderr(stderr: impl Read, label: &str, id: usize, tail: &Mutex<VecDeque<String>>) {
    let mut lines = BufReader::new(stderr);
    let mut line = Vec::new();
    loop {
        line.clear();
        match lines.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let text = String::from_utf8_lossy(&line);
        let text = text.trim_end_matches(['\n', '\r']);
        tracing::info!(step = %label, child = id, "{text}");
        let mut kept = lock(tail);
        if kept.len() == STDERR_TAIL {
            kept.pop_front();
        }
        kept.push_back(text.to_string());
    }
}

/// Writes `batch` as an Arrow IPC stream at the start of the requests' shared file
/// (the IPC writer's buffers are copied straight into kiln's mapping of it); returns its
/// length.
fn write_shared(
    file: &mut SharedFile,
    batch: &RecordBatch,
) -> Result<u64, arrow::error::ArrowError> {
    let mut at = file.writer();
    let mut w = arrow::ipc::writer::StreamWriter::try_new(&mut at, &batch.schema())?;
    w.write(batch)?;
    w.finish()?;
    drop(w);
    Ok(at.position() as u64)
}

/// The frame that says a request of `len` bytes is in the requests' shared file.
fn shared_frame(len: u64) -> Vec<u8> {
    let mut frame = Vec::with_capacity(HEADER + 8);
    frame.extend_from_slice(MAGIC);
    frame.push(TAG_SHARED);
    frame.extend_from_slice(&8u64.to_le_bytes());
    frame.extend_from_slice(&len.to_le_bytes());
    frame
}

/// A batch as the frame kiln sends: header, then an Arrow IPC stream of it.
fn batch_frame(batch: &RecordBatch) -> Result<Vec<u8>, arrow::error::ArrowError> {
    let mut frame = Vec::with_capacity(HEADER + batch.get_array_memory_size() + 1024);
    frame.extend_from_slice(MAGIC);
    frame.push(TAG_BATCH);
    frame.extend_from_slice(&[0; 8]);
    let mut w = arrow::ipc::writer::StreamWriter::try_new(&mut frame, &batch.schema())?;
    w.write(batch)?;
    w.finish()?;
    drop(w);
    let len = (frame.len() - HEADER) as u64;
    frame[5..HEADER].copy_from_slice(&len.to_le_bytes());
    Ok(frame)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_garbage_is_named() {
        let batch = crate::steps::test_util::batch();
        let frame = batch_frame(&batch).expect("encodes");
        match read_frame(&mut frame.as_slice()) {
            Ok(Incoming::Batch(ipc)) => {
                let got = arrow::ipc::reader::StreamReader::try_new(ipc.as_slice(), None)
                    .expect("stream")
                    .next()
                    .expect("one batch")
                    .expect("decodes");
                assert_eq!(got, batch);
            }
            _ => panic!("a batch frame"),
        }
        match read_frame(&mut b"hello world, oops\n".as_slice()) {
            Err(Fault::Protocol(m)) => assert!(m.contains("hello world"), "{m}"),
            _ => panic!("garbage is a protocol error"),
        }
        assert!(matches!(
            read_frame(&mut b"".as_slice()),
            Err(Fault::Crashed(_))
        ));
    }
}
