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
/// to it closes. It is sealed against shrinking (`F_SEAL_SHRINK`), so a mapping of it
/// can never lose its pages under kiln, whatever the child does. Elsewhere than Linux:
/// `Unsupported`.
#[cfg(target_os = "linux")]
pub fn memfd(name: &str) -> io::Result<std::fs::File> {
    use std::os::fd::{AsRawFd, FromRawFd};
    let name = std::ffi::CString::new(name).map_err(io::Error::other)?;
    #[expect(
        unsafe_code,
        reason = "memfd_create with a valid C string; the new descriptor is owned by the File"
    )]
    let file = unsafe {
        let fd = libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING);
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        std::fs::File::from_raw_fd(fd)
    };
    #[expect(
        unsafe_code,
        reason = "fcntl on a descriptor the File owns, with an integer argument"
    )]
    let sealed = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_ADD_SEALS, libc::F_SEAL_SHRINK) };
    if sealed < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(file)
}

#[cfg(not(target_os = "linux"))]
pub fn memfd(_name: &str) -> io::Result<std::fs::File> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "memfd is Linux only",
    ))
}

/// A [`memfd`] file shared with a child, and kiln's mapping of it: kiln writes a request
/// into it, or copies an answer out of it, as memory, without a system call per page.
///
/// The protocol has one side at a time touch the file: kiln writes a request before it
/// sends the frame that names it, and reads an answer after the frame that names it.
/// A child that breaks this only garbles bytes that kiln decodes and checks anyway; it
/// cannot make a mapped page go away, because the file cannot shrink.
pub struct SharedFile {
    file: std::fs::File,
    map: Option<memmap2::MmapMut>,
}

impl SharedFile {
    /// A new, empty shared file (see [`memfd`]).
    pub fn new(name: &str) -> io::Result<SharedFile> {
        Ok(SharedFile {
            file: memfd(name)?,
            map: None,
        })
    }

    /// The file itself, to pass a clone of it to the child.
    pub fn file(&self) -> &std::fs::File {
        &self.file
    }

    /// How many bytes kiln has mapped.
    fn mapped(&self) -> usize {
        self.map.as_ref().map_or(0, |m| m.len())
    }

    /// Maps the whole file as it is now, if that is more than is mapped.
    fn remap(&mut self) -> io::Result<()> {
        let size = usize::try_from(self.file.metadata()?.len()).map_err(io::Error::other)?;
        if size > self.mapped() {
            self.map = None;
            #[expect(
                unsafe_code,
                reason = "a shared mapping of a memfd sealed against shrinking: its pages \
                          stay valid while mapped; what a misbehaving child writes into it \
                          is only bytes, which kiln checks when it decodes them"
            )]
            let map = unsafe { memmap2::MmapOptions::new().len(size).map_mut(&self.file)? };
            self.map = Some(map);
        }
        Ok(())
    }

    /// Copies the first `len` bytes of the file into a new vector; an error if the file
    /// is shorter.
    pub fn read_start(&mut self, len: usize) -> io::Result<Vec<u8>> {
        if len > self.mapped() {
            self.remap()?;
        }
        match &self.map {
            Some(map) if map.len() >= len => Ok(map[..len].to_vec()),
            _ => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("the shared file holds {} bytes", self.mapped()),
            )),
        }
    }

    /// A writer that writes from the start of the file, growing it as needed; its
    /// `position` is the length written.
    pub fn writer(&mut self) -> SharedWriter<'_> {
        SharedWriter {
            shared: self,
            position: 0,
        }
    }
}

/// Writes into a [`SharedFile`] from its start (see [`SharedFile::writer`]).
pub struct SharedWriter<'a> {
    shared: &'a mut SharedFile,
    position: usize,
}

impl SharedWriter<'_> {
    /// The bytes written so far.
    pub fn position(&self) -> usize {
        self.position
    }
}

impl io::Write for SharedWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let end = self.position + buf.len();
        if end > self.shared.mapped() {
            // Grow by doubling (at least 1 MiB), so that a stream of growing batches
            // remaps a few times, not every call.
            let size = end.max(2 * self.shared.mapped()).max(1 << 20);
            self.shared.file.set_len(size as u64)?;
            self.shared.remap()?;
        }
        let map = self
            .shared
            .map
            .as_mut()
            .ok_or_else(|| io::Error::other("the shared file is not mapped"))?;
        map[self.position..end].copy_from_slice(buf);
        self.position = end;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
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
    #[cfg(target_os = "linux")]
    fn a_shared_file_grows_reads_back_and_cannot_shrink() {
        use std::io::Write;
        let mut shared = SharedFile::new("kiln-child-test").expect("memfd");
        let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        let mut w = shared.writer();
        w.write_all(b"head").expect("writes");
        w.write_all(&big).expect("grows");
        assert_eq!(w.position(), 4 + big.len());
        let back = shared.read_start(4 + big.len()).expect("reads");
        assert_eq!(&back[..4], b"head");
        assert_eq!(&back[4..], &big[..]);
        // What another process sees through its own descriptor is the same bytes.
        let mut other = std::fs::File::open(format!(
            "/proc/self/fd/{}",
            std::os::fd::AsRawFd::as_raw_fd(shared.file())
        ))
        .expect("opens the memfd again");
        let mut head = [0u8; 4];
        std::io::Read::read_exact(&mut other, &mut head).expect("reads");
        assert_eq!(&head, b"head");
        // A shorter file than asked for is an error, not a fault.
        let size = shared.file().metadata().expect("stat").len() as usize;
        let e = shared.read_start(size + 1).expect_err("past the end");
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
        // The seal: nobody can cut the pages kiln has mapped.
        assert!(shared.file().set_len(10).is_err(), "a sealed memfd shrank");
    }

    #[test]
    fn a_missing_program_is_an_error() {
        let e =
            spawn_tied(Command::new("/nonexistent/kiln-child-test")).expect_err("no such program");
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
    }
}
