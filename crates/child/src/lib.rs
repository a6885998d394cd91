//! Child processes that cannot outlive kiln.
//!
//! kiln's `exec` step runs user code in long-lived child processes. When kiln is killed
//! (`kill -9`, the OOM killer, a scheduler's preemption) nothing of kiln runs to stop
//! them, so the kernel must: on Linux a child started by [`spawn_tied`] asks, between
//! fork and exec, for SIGKILL when its parent goes (`PR_SET_PDEATHSIG`). The kernel
//! sends it when the *thread* that forked the child ends, not the process, so every
//! child is forked by one thread that lives as long as the process and does nothing
//! else. A child whose parent died before it made the request (the race between fork and
//! `prctl`) sees another parent process id, and does not start.
//!
//! Elsewhere than Linux the child is spawned as usual; it still ends when its stdin
//! closes, which is what kiln's step protocol asks of every child.

use std::io;
use std::process::{Child, Command};
use std::sync::mpsc::{Sender, channel};
use std::sync::{Mutex, OnceLock};

type Request = (Command, Sender<io::Result<Child>>);

/// Spawns `command` from the process-long spawning thread; the child is killed when
/// kiln ends, however it ends.
pub fn spawn_tied(command: Command) -> io::Result<Child> {
    static SPAWNER: OnceLock<Mutex<Sender<Request>>> = OnceLock::new();
    let spawner = SPAWNER.get_or_init(|| {
        let (tx, rx) = channel::<Request>();
        std::thread::Builder::new()
            .name("kiln-spawner".into())
            .spawn(move || {
                for (mut command, reply) in rx {
                    let _ = reply.send(spawn_here(&mut command));
                }
            })
            .map(|_| ())
            .unwrap_or_else(|e| eprintln!("kiln: cannot start the process-spawning thread: {e}"));
        Mutex::new(tx)
    });
    let (tx, rx) = channel();
    let sent = spawner
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .send((command, tx));
    if sent.is_err() {
        return Err(io::Error::other("the process-spawning thread is gone"));
    }
    rx.recv()
        .map_err(|_| io::Error::other("the process-spawning thread did not answer"))?
}

#[cfg(target_os = "linux")]
fn spawn_here(command: &mut Command) -> io::Result<Child> {
    use std::os::unix::process::CommandExt;
    let parent = std::process::id() as libc::pid_t;
    #[expect(
        unsafe_code,
        reason = "pre_exec runs between fork and exec: only prctl and getppid, both async-signal-safe"
    )]
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
                0,
                0,
                0,
            ) != 0
            {
                return Err(io::Error::last_os_error());
            }
            if libc::getppid() != parent {
                return Err(io::Error::other("kiln ended while the child was starting"));
            }
            Ok(())
        });
    }
    command.spawn()
}

#[cfg(not(target_os = "linux"))]
fn spawn_here(command: &mut Command) -> io::Result<Child> {
    command.spawn()
}

/// Asks for a pipe buffer of `bytes` (Linux: `F_SETPIPE_SZ`; the kernel rounds it up to
/// pages and refuses more than `/proc/sys/fs/pipe-max-size`, 1 MiB by default). A pipe
/// that carries megabytes a call moves them in 16 times fewer steps than through the
/// default 64 KiB. Returns the size the pipe has; elsewhere than Linux, does nothing.
#[cfg(target_os = "linux")]
pub fn widen_pipe(pipe: &impl std::os::fd::AsRawFd, bytes: usize) -> io::Result<usize> {
    let want = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    #[expect(
        unsafe_code,
        reason = "fcntl on a descriptor the caller owns, with an integer argument"
    )]
    let got = unsafe { libc::fcntl(pipe.as_raw_fd(), libc::F_SETPIPE_SZ, want) };
    if got < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(got as usize)
}

#[cfg(not(target_os = "linux"))]
pub fn widen_pipe<T>(_pipe: &T, bytes: usize) -> io::Result<usize> {
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spawns_and_reaps_a_child() {
        let mut child = spawn_tied(Command::new("true")).expect("spawns");
        assert!(child.wait().expect("waits").success());
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn pipes_widen_to_what_the_kernel_allows() {
        let mut c = Command::new("cat");
        c.stdin(std::process::Stdio::piped());
        let mut child = spawn_tied(c).expect("spawns");
        let stdin = child.stdin.take().expect("stdin");
        let got = widen_pipe(&stdin, 1 << 20).expect("F_SETPIPE_SZ");
        assert!(got >= 1 << 16, "{got}");
        drop(stdin);
        assert!(child.wait().expect("waits").success());
    }

    #[test]
    fn a_missing_program_is_an_error() {
        let e =
            spawn_tied(Command::new("/nonexistent/kiln-child-test")).expect_err("no such program");
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
    }
}
