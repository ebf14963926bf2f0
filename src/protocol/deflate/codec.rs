//! Compressing and inflating one message at a time (RFC 7692 section 7.2).

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};
use thiserror::Error;

use super::negotiate::{MAX_WINDOW_BITS, MIN_ZLIB_WINDOW_BITS};

/// What a sync flush ends with, stripped by the sender and appended back by
/// the receiver (section 7.2.1 and 7.2.2).
pub const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// How much output one inflate step may produce: the most a message can
/// overshoot its limit by before we notice is zero, since a step never asks
/// for more than the room left under the limit plus one byte.
const STEP: usize = 16 * 1024;

/// A codec that cannot be built from the values given.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("compression level {0} is outside 1..=9")]
    Level(u32),
    #[error("window bits {0} outside 8..=15")]
    WindowBits(u8),
}

/// Compression failed; zlib only reports this for a broken stream state.
#[derive(Debug, Error)]
#[error("deflate failed: {0}")]
pub struct DeflateError(#[from] flate2::CompressError);

/// Why a compressed message could not be inflated.
#[derive(Debug, Error)]
pub enum InflateError {
    /// The message inflates past the limit: close with 1009. Nothing beyond
    /// `limit` bytes was produced or allocated.
    #[error("inflated message is larger than {limit} bytes")]
    TooBig { limit: usize },
    /// Not valid DEFLATE data for this context: close with 1007.
    #[error("invalid compressed data: {0}")]
    Corrupt(#[from] flate2::DecompressError),
}

fn check_window(bits: u8) -> Result<u8, ConfigError> {
    if (8..=MAX_WINDOW_BITS).contains(&bits) {
        // zlib has no 256-byte window; 9 inflates anything 8 produced, and a
        // sender limited to 8 is declined at negotiation.
        Ok(bits.max(MIN_ZLIB_WINDOW_BITS))
    } else {
        Err(ConfigError::WindowBits(bits))
    }
}

/// Compresses messages for one direction of one connection.
///
/// The memory level is zlib's default (8): flate2 does not expose it, and
/// the window bits are the knob that decides a connection's memory.
pub struct Deflater {
    inner: Compress,
    no_context_takeover: bool,
}

impl Deflater {
    /// `level` 1..=9; `window_bits` the agreed maximum for our side, 9..=15
    /// (8 is taken as 9, see [`MIN_ZLIB_WINDOW_BITS`]).
    pub fn new(
        level: u32,
        window_bits: u8,
        no_context_takeover: bool,
    ) -> Result<Self, ConfigError> {
        if !(1..=9).contains(&level) {
            return Err(ConfigError::Level(level));
        }
        let bits = check_window(window_bits)?;
        Ok(Deflater {
            inner: Compress::new_with_window_bits(Compression::new(level), false, bits),
            no_context_takeover,
        })
    }

    /// Appends the compressed payload of `message` to `out`: a sync flush
    /// with its trailing `00 00 ff ff` removed. An empty message becomes the
    /// single byte `00` (section 7.2.3.6).
    pub fn compress(&mut self, message: &[u8], out: &mut Vec<u8>) -> Result<(), DeflateError> {
        let start = out.len();
        // Incompressible input grows by a few bytes per 16 KiB block.
        out.reserve(message.len() / 2 + 64);
        let mut consumed = 0;
        loop {
            if out.capacity() == out.len() {
                out.reserve(out.capacity().max(64));
            }
            let before_in = self.inner.total_in();
            self.inner
                .compress_vec(&message[consumed..], out, FlushCompress::Sync)?;
            consumed += (self.inner.total_in() - before_in) as usize;
            // A sync flush is complete once zlib stops short of filling the
            // buffer with all input taken.
            if consumed == message.len() && out.len() < out.capacity() {
                break;
            }
        }
        if out[start..].ends_with(&TAIL) {
            out.truncate(out.len() - TAIL.len());
        }
        if out.len() == start {
            out.push(0x00);
        }
        if self.no_context_takeover {
            self.inner.reset();
        }
        Ok(())
    }
}

/// Inflates messages for one direction of one connection, with a limit on
/// each message's inflated size.
pub struct Inflater {
    inner: Decompress,
    window_bits: u8,
    no_context_takeover: bool,
    max_size: usize,
    step: Box<[u8]>,
}

impl Inflater {
    /// `window_bits` the agreed maximum for the peer, 8..=15; `max_size` the
    /// largest inflated message accepted.
    pub fn new(
        window_bits: u8,
        no_context_takeover: bool,
        max_size: usize,
    ) -> Result<Self, ConfigError> {
        let bits = check_window(window_bits)?;
        Ok(Inflater {
            inner: Decompress::new_with_window_bits(false, bits),
            window_bits: bits,
            no_context_takeover,
            max_size,
            step: vec![0; STEP].into_boxed_slice(),
        })
    }

    /// Inflates a message whose compressed payload is `payload`.
    pub fn decompress(&mut self, payload: &[u8], out: &mut Vec<u8>) -> Result<(), InflateError> {
        self.decompress_pieces([payload], out)
    }

    /// Inflates a message whose compressed payload is the concatenation of
    /// `pieces` (its frames' payloads, in order), appending it to `out`.
    /// After an error the inflater's context is lost; the caller closes the
    /// connection.
    pub fn decompress_pieces<'a, I>(
        &mut self,
        pieces: I,
        out: &mut Vec<u8>,
    ) -> Result<(), InflateError>
    where
        I: IntoIterator<Item = &'a [u8]>,
    {
        let start = out.len();
        let mut ended = false;
        for piece in pieces.into_iter().chain([&TAIL[..]]) {
            if !ended {
                ended = self.feed(piece, start, out)?;
            }
        }
        // A sender may end a message with a BFINAL block (section 7.2.3.3);
        // what follows it starts a new stream, so the old context is gone.
        if self.no_context_takeover || ended {
            self.inner.reset(false);
        }
        Ok(())
    }

    /// Feeds one piece; returns whether the DEFLATE stream ended.
    fn feed(
        &mut self,
        piece: &[u8],
        start: usize,
        out: &mut Vec<u8>,
    ) -> Result<bool, InflateError> {
        let mut consumed = 0;
        loop {
            let produced_so_far = out.len() - start;
            // One byte past the limit is enough to know it was crossed.
            let room = (self.max_size - produced_so_far.min(self.max_size) + 1).min(STEP);
            let (before_in, before_out) = (self.inner.total_in(), self.inner.total_out());
            let status = self.inner.decompress(
                &piece[consumed..],
                &mut self.step[..room],
                FlushDecompress::Sync,
            )?;
            consumed += (self.inner.total_in() - before_in) as usize;
            let produced = (self.inner.total_out() - before_out) as usize;
            if produced_so_far + produced > self.max_size {
                self.inner.reset(false);
                return Err(InflateError::TooBig {
                    limit: self.max_size,
                });
            }
            grow_within(out, produced, start + self.max_size);
            out.extend_from_slice(&self.step[..produced]);
            match status {
                Status::StreamEnd => return Ok(true),
                // No progress possible: this piece is used up.
                Status::BufError => return Ok(false),
                Status::Ok if consumed == piece.len() && produced < room => return Ok(false),
                Status::Ok => {}
            }
        }
    }

    /// The window this inflater was built with (8 becomes 9).
    pub fn window_bits(&self) -> u8 {
        self.window_bits
    }
}

/// Makes room for `more` bytes, doubling as `Vec` would but never past
/// `cap`, so a message near the limit does not allocate twice the limit.
fn grow_within(out: &mut Vec<u8>, more: usize, cap: usize) {
    let need = out.len() + more;
    if need <= out.capacity() {
        return;
    }
    let target = (out.capacity() * 2).max(need).min(cap.max(need));
    out.reserve_exact(target - out.len());
}
