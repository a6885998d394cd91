//! flate2's single-member decoder, one member after another, for builds without ISA-L
//! (`--no-default-features`): the same [`super::Members`] view of a gzip stream.

use std::io::{self, BufRead, Read};

/// A reader that counts what is consumed from it.
pub struct Counted<R> {
    inner: R,
    consumed: u64,
}

impl<R: BufRead> Read for Counted<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        super::read_buffered(self, out)
    }
}

impl<R: BufRead> BufRead for Counted<R> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        self.inner.fill_buf()
    }

    fn consume(&mut self, n: usize) {
        self.consumed += n as u64;
        self.inner.consume(n);
    }
}

enum State<R> {
    Between(Counted<R>),
    In(flate2::bufread::GzDecoder<Counted<R>>),
    Moving,
}

pub struct FlateMembers<R> {
    state: State<R>,
    start: u64,
}

impl<R: BufRead> FlateMembers<R> {
    pub fn new(inner: R) -> Self {
        FlateMembers {
            state: State::Between(Counted { inner, consumed: 0 }),
            start: 0,
        }
    }
}

impl<R: BufRead> Read for FlateMembers<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        loop {
            match &mut self.state {
                State::Between(c) => {
                    if c.fill_buf()?.is_empty() {
                        return Ok(0);
                    }
                }
                State::Moving => {}
                State::In(d) => {
                    let n = d.read(out)?;
                    if n > 0 || out.is_empty() {
                        return Ok(n);
                    }
                }
            }
            self.state = match std::mem::replace(&mut self.state, State::Moving) {
                State::Between(c) => {
                    self.start = c.consumed;
                    State::In(flate2::bufread::GzDecoder::new(c))
                }
                State::In(d) => State::Between(d.into_inner()),
                State::Moving => {
                    return Err(io::Error::other("gzip decoder used after a failure"));
                }
            };
        }
    }
}

impl<R: BufRead> super::Members for FlateMembers<R> {
    fn member_start(&self) -> u64 {
        self.start
    }
}
