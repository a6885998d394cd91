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

type Request = (Command, Vec<std::fs::File>, Sender<io::Result<Child>>);

/// Spawns `command` from the process-long spawning thread; the child is killed when
/// kiln ends, however it ends.
pub fn spawn_tied(command: Command) -> io::Result<Child> {
    spawn_tied_with(command, Vec::new())
}

/// [`spawn_tied`], the child also getting `files` as its descriptors 3, 4, … (on Linux;
/// elsewhere they are not passed). The files given are closed in kiln once the child has
/// them: pass clones (`File::try_clone`) of files kiln keeps using.
pub fn spawn_tied_with(command: Command, files: Vec<std::fs::File>) -> io::Result<Child> {
    static SPAWNER: OnceLock<Mutex<Sender<Request>>> = OnceLock::new();
    let spawner = SPAWNER.get_or_init(|| {
        let (tx, rx) = channel::<Request>();
        std::thread::Builder::new()
            .name("kiln-spawner".into())
            .spawn(move || {
                for (mut command, files, reply) in rx {
                    let _ = reply.send(spawn_here(&mut command, &files));
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
        .send((command, files, tx));
    if sent.is_err() {
        return Err(io::Error::other("the process-spawning thread is gone"));
    }
    rx.recv()
        .map_err(|_| io::Error::other("the process-spawning thread did not answer"))?
}

#[cfg(target_os = "linux")]
fn spawn_here(command: &mut Command, files: &[std::fs::File]) -> io::Result<Child> {
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;
    let parent = std::process::id() as libc::pid_t;
    let fds: Vec<libc::c_int> = files.iter().map(|f| f.as_raw_fd()).collect();
    // A file whose number is the target of an earlier one would be overwritten first.
    let low = 3 + fds.len() as libc::c_int;
    if fds
        .iter()
        .enumerate()
        .any(|(i, &fd)| fd < low && fd != 3 + i as libc::c_int)
    {
        return Err(io::Error::other(
            "a shared file has a descriptor number the child needs",
        ));
    }
    #[expect(
        unsafe_code,
        reason = "pre_exec runs between fork and exec: prctl, getppid, dup2 and fcntl, all async-signal-safe"
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
            // The shared files at 3, 4, …: a dup2 copy is not close-on-exec; a file that
            // already has its number only loses the flag.
            for (i, &fd) in fds.iter().enumerate() {
                let target = 3 + i as libc::c_int;
                let done = if fd == target {
                    libc::fcntl(fd, libc::F_SETFD, 0)
                } else {
                    libc::dup2(fd, target)
                };
                if done < 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    command.spawn()
}

#[cfg(not(target_os = "linux"))]
fn spawn_here(command: &mut Command, _files: &[std::fs::File]) -> io::Result<Child> {
    command.spawn()
}

/// An anonymous file in memory (Linux `memfd_create`, close-on-exec), for sharing batches
/// with a child without copying them through a pipe; it goes when the last descriptor
/// to it closes. Elsewhere than Linux: `Unsupported`.
#[cfg(target_os = "linux")]
pub fn memfd(name: &str) -> io::Result<std::fs::File> {
    use std::os::fd::FromRawFd;
    let name = std::ffi::CString::new(name).map_err(io::Error::other)?;
    #[expect(
        unsafe_code,
        reason = "memfd_create with a valid C string; the new descriptor is owned by the File"
    )]
    let file = unsafe {
        let fd = libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC);
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        std::fs::File::from_raw_fd(fd)
    };
    Ok(file)
}

#[cfg(not(target_os = "linux"))]
pub fn memfd(_name: &str) -> io::Result<std::fs::File> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "memfd is Linux only",
    ))
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
