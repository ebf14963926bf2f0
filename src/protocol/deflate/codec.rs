//! Compressing and inflating one message at a time (RFC 7692 section 7.2).

use bytes::BytesMut;
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};
use thiserror::Error;

use super::negotiate::{MAX_WINDOW_BITS, MIN_ZLIB_WINDOW_BITS};

/// What a sync flush ends with, stripped by the sender and appended back by
/// the receiver (section 7.2.1 and 7.2.2).
pub const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// The scratch buffer one inflate step writes into. A step asks for at most
/// the room left under the limit plus one byte, so crossing the limit is seen
/// before anything past it reaches the message buffer.
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
        let bits = Deflater::check(level, window_bits)?;
        Ok(Deflater {
            inner: Compress::new_with_window_bits(Compression::new(level), false, bits),
            no_context_takeover,
        })
    }

    /// Checks what [`new`](Deflater::new) would be given, without building
    /// anything (a compressor is a few hundred KiB); returns the window
    /// zlib will use.
    pub fn check(level: u32, window_bits: u8) -> Result<u8, ConfigError> {
        if !(1..=9).contains(&level) {
            return Err(ConfigError::Level(level));
        }
        check_window(window_bits)
    }

    /// Appends the compressed payload of `message` to `out`: a sync flush
    /// with its trailing `00 00 ff ff` removed. An empty message becomes the
    /// single byte `00` (section 7.2.3.6).
    pub fn compress(&mut self, message: &[u8], out: &mut Vec<u8>) -> Result<(), DeflateError> {
        self.compress_parts(&[message], out)
    }

    /// [`compress`](Deflater::compress) for the message that is `parts`
    /// joined (a reply prefix and the text), without joining them first.
    /// After an error the compressor starts clean; the output is unusable.
    pub fn compress_parts(
        &mut self,
        parts: &[&[u8]],
        out: &mut Vec<u8>,
    ) -> Result<(), DeflateError> {
        let start = out.len();
        let total: usize = parts.iter().map(|p| p.len()).sum();
        // A guess for text; the loop below doubles when it is short.
        out.reserve(total / 4 + 64);
        let last = parts.len().saturating_sub(1);
        for (i, part) in parts.iter().enumerate() {
            let flush = if i == last {
                FlushCompress::Sync
            } else {
                FlushCompress::None
            };
            if let Err(e) = self.deflate(part, flush, out) {
                self.inner.reset();
                return Err(e);
            }
        }
        if parts.is_empty() {
            self.deflate(&[], FlushCompress::Sync, out)?;
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

    /// Feeds all of `input`; with a sync flush, until the flush is complete.
    fn deflate(
        &mut self,
        input: &[u8],
        flush: FlushCompress,
        out: &mut Vec<u8>,
    ) -> Result<(), DeflateError> {
        let sync = matches!(flush, FlushCompress::Sync);
        let mut consumed = 0;
        loop {
            if out.capacity() == out.len() {
                out.reserve(out.capacity().max(64));
            }
            let before_in = self.inner.total_in();
            self.inner.compress_vec(&input[consumed..], out, flush)?;
            consumed += (self.inner.total_in() - before_in) as usize;
            // All input taken; a sync flush is complete once zlib stops
            // short of filling the buffer.
            if consumed == input.len() && (!sync || out.len() < out.capacity()) {
                return Ok(());
            }
        }
    }

    /// Whether each message starts with a fresh window.
    pub fn no_context_takeover(&self) -> bool {
        self.no_context_takeover
    }
}

/// Inflates messages for one direction of one connection, with a limit on
/// each message's inflated size.
///
/// A message may be inflated whole ([`decompress`](Inflater::decompress)) or
/// as its frames arrive ([`feed`](Inflater::feed) each piece, then
/// [`finish`](Inflater::finish)), so that a message crossing the limit is
/// refused as soon as the bytes that cross it arrive.
pub struct Inflater {
    inner: Decompress,
    window_bits: u8,
    no_context_takeover: bool,
    max_size: usize,
    /// Bytes the current message has inflated to so far.
    produced: usize,
    /// The current message's DEFLATE stream ended (a BFINAL block).
    ended: bool,
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
            produced: 0,
            ended: false,
            step: vec![0; STEP].into_boxed_slice(),
        })
    }

    /// Inflates a message whose compressed payload is `payload`.
    pub fn decompress(&mut self, payload: &[u8], out: &mut BytesMut) -> Result<(), InflateError> {
        self.decompress_pieces([payload], out)
    }

    /// Inflates a message whose compressed payload is the concatenation of
    /// `pieces` (its frames' payloads, in order), appending it to `out`.
    /// After an error the inflater's context is lost; the caller closes the
    /// connection.
    pub fn decompress_pieces<'a, I>(
        &mut self,
        pieces: I,
        out: &mut BytesMut,
    ) -> Result<(), InflateError>
    where
        I: IntoIterator<Item = &'a [u8]>,
    {
        for piece in pieces {
            self.feed(piece, out)?;
        }
        self.finish(out)
    }

    /// Inflates the next piece of the current message's payload, appending
    /// to `out`. Fails as soon as the message passes the limit.
    pub fn feed(&mut self, piece: &[u8], out: &mut BytesMut) -> Result<(), InflateError> {
        if !self.ended {
            self.ended = self.inflate(piece, out)?;
        }
        Ok(())
    }

    /// Ends the current message: inflates the stripped `00 00 ff ff` tail
    /// and, without context takeover, forgets the window.
    pub fn finish(&mut self, out: &mut BytesMut) -> Result<(), InflateError> {
        self.feed(&TAIL, out)?;
        // A sender may end a message with a BFINAL block (section 7.2.3.3);
        // what follows it starts a new stream, so the old context is gone.
        if self.no_context_takeover || self.ended {
            self.inner.reset(false);
        }
        self.produced = 0;
        self.ended = false;
        Ok(())
    }

    /// Inflates one piece; returns whether the DEFLATE stream ended.
    fn inflate(&mut self, piece: &[u8], out: &mut BytesMut) -> Result<bool, InflateError> {
        let mut consumed = 0;
        loop {
            // One byte past the limit is enough to know it was crossed.
            let room = (self.max_size - self.produced.min(self.max_size))
                .saturating_add(1)
                .min(STEP);
            let (before_in, before_out) = (self.inner.total_in(), self.inner.total_out());
            let result = self.inner.decompress(
                &piece[consumed..],
                &mut self.step[..room],
                FlushDecompress::Sync,
            );
            let produced = (self.inner.total_out() - before_out) as usize;
            // On an error, what inflated before it (up to the limit) is
            // still handed out: the caller may find an earlier fault in it
            // (text that is not UTF-8), and must find the same one however
            // the payload was cut into pieces.
            let kept = produced.min(self.max_size - self.produced.min(self.max_size));
            let cap = (self.max_size - self.produced).saturating_add(out.len());
            grow_within(out, kept, cap);
            out.extend_from_slice(&self.step[..kept]);
            self.produced += kept;
            // Output past the limit came before whatever error the same
            // call found further on, so the limit is the fault to report.
            if kept < produced {
                self.forget();
                return Err(InflateError::TooBig {
                    limit: self.max_size,
                });
            }
            let status = match result {
                Ok(status) => status,
                Err(e) => {
                    self.forget();
                    return Err(e.into());
                }
            };
            consumed += (self.inner.total_in() - before_in) as usize;
            match status {
                Status::StreamEnd => return Ok(true),
                // No progress possible: this piece is used up.
                Status::BufError => return Ok(false),
                Status::Ok if consumed == piece.len() && produced < room => return Ok(false),
                Status::Ok => {}
            }
        }
    }

    /// After an error: the context cannot be trusted, start clean.
    fn forget(&mut self) {
        self.inner.reset(false);
        self.produced = 0;
        self.ended = false;
    }

    /// The window this inflater was built with (8 becomes 9).
    pub fn window_bits(&self) -> u8 {
        self.window_bits
    }

    /// The largest inflated message it accepts.
    pub fn max_size(&self) -> usize {
        self.max_size
    }

    /// Changes the limit (between messages).
    pub fn set_max_size(&mut self, max_size: usize) {
        self.max_size = max_size;
    }
}

/// Makes room for `more` bytes, doubling as `Vec` would but never past
/// `cap`, so a message near the limit does not allocate twice the limit.
fn grow_within(out: &mut BytesMut, more: usize, cap: usize) {
    let need = out.len() + more;
    if need <= out.capacity() {
        return;
    }
    let doubled = out.capacity() * 2;
    let target = doubled.max(need).min(cap.max(need));
    if target >= doubled {
        out.reserve(target - out.len());
    } else {
        // `reserve` would double; near the cap, move to an exact buffer
        // instead (at most once per message).
        let mut exact = BytesMut::with_capacity(target);
        exact.extend_from_slice(out);
        *out = exact;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    const LIMIT: usize = 1 << 20;

    fn deflate_one(d: &mut Deflater, msg: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        d.compress(msg, &mut out).unwrap();
        out
    }

    fn inflate_one(i: &mut Inflater, payload: &[u8]) -> Result<Vec<u8>, InflateError> {
        let mut out = BytesMut::new();
        i.decompress(payload, &mut out).map(|()| out.to_vec())
    }

    fn pair(takeover: bool) -> (Deflater, Inflater) {
        (
            Deflater::new(6, 15, !takeover).unwrap(),
            Inflater::new(15, !takeover, LIMIT).unwrap(),
        )
    }

    fn text() -> Vec<u8> {
        "The quick brown fox jumps over the lazy dog. Привет, мир! "
            .repeat(50)
            .into_bytes()
    }

    /// Lowercase letters from a fixed LCG: text with few internal repeats.
    fn noise(len: usize) -> Vec<u8> {
        let mut x = 0x2545_f491_u32;
        (0..len)
            .map(|_| {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                b'a' + ((x >> 16) % 26) as u8
            })
            .collect()
    }

    #[test]
    fn rfc_7692_section_7_2_3_examples_inflate() {
        let mut i = Inflater::new(15, false, LIMIT).unwrap();
        // 7.2.3.1: "Hello" in one compressed message.
        assert_eq!(
            inflate_one(&mut i, &[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]).unwrap(),
            b"Hello"
        );
        // 7.2.3.2: the second "Hello" refers back to the first.
        assert_eq!(
            inflate_one(&mut i, &[0xf2, 0x00, 0x11, 0x00, 0x00]).unwrap(),
            b"Hello"
        );
        // 7.2.3.3: a stored (uncompressed) block.
        let stored = [
            0x00, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x00,
        ];
        assert_eq!(inflate_one(&mut i, &stored).unwrap(), b"Hello");
        // 7.2.3.4: a BFINAL block; the next message then starts a new stream.
        assert_eq!(
            inflate_one(&mut i, &[0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]).unwrap(),
            b"Hello"
        );
        assert_eq!(
            inflate_one(&mut i, &[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]).unwrap(),
            b"Hello"
        );
        // 7.2.3.6: an empty message sent as a single 00 byte.
        assert_eq!(inflate_one(&mut i, &[0x00]).unwrap(), b"");
    }

    #[test]
    fn deflater_matches_the_rfc_hello_examples() {
        let mut d = Deflater::new(6, 15, false).unwrap();
        assert_eq!(
            deflate_one(&mut d, b"Hello"),
            [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]
        );
        let second = deflate_one(&mut d, b"Hello");
        let mut i = Inflater::new(15, false, LIMIT).unwrap();
        inflate_one(&mut i, &[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]).unwrap();
        assert_eq!(inflate_one(&mut i, &second).unwrap(), b"Hello");
    }

    #[test]
    fn round_trips_text_binary_and_empty_messages() {
        let binary: Vec<u8> = (0..70_000u32)
            .map(|n| (n.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        for takeover in [true, false] {
            let (mut d, mut i) = pair(takeover);
            for msg in [text(), binary.clone(), Vec::new(), b"x".to_vec(), text()] {
                let payload = deflate_one(&mut d, &msg);
                assert!(!payload.ends_with(&TAIL));
                assert_eq!(inflate_one(&mut i, &payload).unwrap(), msg);
            }
        }
    }

    #[test]
    fn empty_message_round_trips_and_an_empty_payload_inflates_to_nothing() {
        let (mut d, mut i) = pair(false);
        let payload = deflate_one(&mut d, b"");
        assert!(
            !payload.is_empty() && !payload.ends_with(&TAIL),
            "{payload:02x?}"
        );
        assert_eq!(inflate_one(&mut i, &payload).unwrap(), b"");
        // An empty payload is accepted too.
        assert_eq!(inflate_one(&mut i, b"").unwrap(), b"");
    }

    #[test]
    fn every_level_and_window_round_trips() {
        for level in 1..=9 {
            for bits in 8..=15 {
                let mut d = Deflater::new(level, bits, false).unwrap();
                let mut i = Inflater::new(bits, false, LIMIT).unwrap();
                for _ in 0..2 {
                    let payload = deflate_one(&mut d, &text());
                    assert_eq!(
                        inflate_one(&mut i, &payload).unwrap(),
                        text(),
                        "{level} {bits}"
                    );
                }
            }
        }
        assert_eq!(Inflater::new(8, false, 1).unwrap().window_bits(), 9);
    }

    #[test]
    fn bad_configuration_is_an_error_not_a_panic() {
        for (level, bits, want) in [
            (0, 15, ConfigError::Level(0)),
            (10, 15, ConfigError::Level(10)),
            (6, 7, ConfigError::WindowBits(7)),
            (6, 16, ConfigError::WindowBits(16)),
        ] {
            assert_eq!(Deflater::new(level, bits, false).err(), Some(want));
        }
        assert_eq!(
            Inflater::new(7, false, 1).err(),
            Some(ConfigError::WindowBits(7))
        );
    }

    #[test]
    fn context_takeover_shrinks_the_second_message_and_needs_the_first() {
        let (mut d, mut i) = pair(true);
        // Little repetition inside, so only the previous message helps.
        let msg = noise(4000);
        let first = deflate_one(&mut d, &msg);
        let second = deflate_one(&mut d, &msg);
        assert!(
            second.len() * 4 < first.len(),
            "{} vs {}",
            second.len(),
            first.len()
        );
        assert_eq!(inflate_one(&mut i, &first).unwrap(), msg);
        assert_eq!(inflate_one(&mut i, &second).unwrap(), msg);
        // Without the first message's window the second cannot be read.
        let mut fresh = Inflater::new(15, false, LIMIT).unwrap();
        match inflate_one(&mut fresh, &second) {
            Err(InflateError::Corrupt(_)) => {}
            Ok(out) => assert_ne!(out, msg),
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn no_context_takeover_makes_every_message_stand_alone() {
        let (mut d, mut i) = pair(false);
        let msg = text();
        let first = deflate_one(&mut d, &msg);
        let second = deflate_one(&mut d, &msg);
        assert_eq!(first, second);
        // Any fresh inflater reads any message; ours resets between them.
        let mut fresh = Inflater::new(15, true, LIMIT).unwrap();
        assert_eq!(inflate_one(&mut fresh, &second).unwrap(), msg);
        assert_eq!(inflate_one(&mut i, &first).unwrap(), msg);
        assert_eq!(inflate_one(&mut i, &second).unwrap(), msg);
        // A resetting inflater cannot follow a sender that keeps its window.
        let (mut keeper, _) = pair(true);
        let a = deflate_one(&mut keeper, &msg);
        let b = deflate_one(&mut keeper, &msg);
        assert_eq!(inflate_one(&mut fresh, &a).unwrap(), msg);
        assert!(inflate_one(&mut fresh, &b).map_or(true, |out| out != msg));
    }

    #[test]
    fn payload_in_pieces_equals_payload_whole() {
        let (mut d, _) = pair(true);
        let msg = text();
        let payload = deflate_one(&mut d, &msg);
        for cut in [1, 2, 7, payload.len() / 2, payload.len() - 1] {
            let mut i = Inflater::new(15, false, LIMIT).unwrap();
            let (a, b) = payload.split_at(cut);
            let mut out = BytesMut::from(&b"kept:"[..]);
            i.decompress_pieces([a, &[][..], b], &mut out).unwrap();
            assert_eq!(&out[5..], &msg[..], "cut at {cut}");
        }
    }

    #[test]
    fn interoperates_with_flate2_deflate_encoder() {
        // flate2's writer, a sync flush, the tail stripped: what other
        // implementations send.
        let mut enc = flate2::write::DeflateEncoder::new(Vec::new(), Compression::new(9));
        enc.write_all(&text()).unwrap();
        enc.flush().unwrap();
        let mut theirs = enc.get_ref().clone();
        assert!(theirs.ends_with(&TAIL));
        theirs.truncate(theirs.len() - TAIL.len());
        let mut i = Inflater::new(15, false, LIMIT).unwrap();
        assert_eq!(inflate_one(&mut i, &theirs).unwrap(), text());

        // And our payload plus the tail is an ordinary raw deflate stream.
        let (mut d, _) = pair(false);
        let mut ours = deflate_one(&mut d, &text());
        ours.extend_from_slice(&TAIL);
        let mut dec = flate2::write::DeflateDecoder::new(Vec::new());
        dec.write_all(&ours).unwrap();
        dec.flush().unwrap();
        assert_eq!(dec.get_ref(), &text());
    }

    #[test]
    fn unlimited_inflater_does_not_overflow() {
        let (mut d, _) = pair(false);
        let mut i = Inflater::new(15, false, usize::MAX).unwrap();
        let payload = deflate_one(&mut d, &text());
        assert_eq!(inflate_one(&mut i, &payload).unwrap(), text());
    }

    #[test]
    fn corrupt_payload_is_an_error() {
        let mut i = Inflater::new(15, false, LIMIT).unwrap();
        // BTYPE 11 is reserved.
        assert!(matches!(
            inflate_one(&mut i, &[0xff, 0xff]),
            Err(InflateError::Corrupt(_))
        ));
    }

    #[test]
    fn limit_allows_exactly_max_size() {
        let (mut d, _) = pair(false);
        let msg = vec![b'a'; 10_000];
        let payload = deflate_one(&mut d, &msg);
        let mut exact = Inflater::new(15, false, 10_000).unwrap();
        assert_eq!(inflate_one(&mut exact, &payload).unwrap(), msg);
        let mut under = Inflater::new(15, false, 9_999).unwrap();
        assert!(matches!(
            inflate_one(&mut under, &payload),
            Err(InflateError::TooBig { limit: 9_999 })
        ));
    }

    #[test]
    fn bomb_fails_at_the_limit_fast_without_allocating_past_it() {
        // One MiB of zeros compresses to about 1 KiB of whole blocks ending
        // in a sync flush; 1024 copies of it are a valid ~1 MiB payload
        // that would inflate to 1 GiB.
        let mut d = Deflater::new(9, 15, false).unwrap();
        let chunk = deflate_one(&mut d, &vec![0; 1 << 20]);
        let mut chunk_with_tail = chunk.clone();
        chunk_with_tail.extend_from_slice(&TAIL);
        assert!(chunk.len() < 2048, "{}", chunk.len());
        let pieces = vec![&chunk_with_tail[..]; 1024];

        let started = std::time::Instant::now();
        let limit = 1 << 20;
        let mut i = Inflater::new(15, false, limit).unwrap();
        let mut out = BytesMut::new();
        let err = i.decompress_pieces(pieces.iter().copied(), &mut out);
        assert!(matches!(err, Err(InflateError::TooBig { limit: 1048576 })));
        assert!(out.capacity() <= limit, "{}", out.capacity());
        assert!(started.elapsed() < std::time::Duration::from_secs(5));

        // Under the limit the same pieces are fine (two copies: 2 MiB).
        let mut big = Inflater::new(15, false, 2 << 20).unwrap();
        let mut out = BytesMut::new();
        big.decompress_pieces(pieces[..2].iter().copied(), &mut out)
            .unwrap();
        assert_eq!(out.len(), 2 << 20);
        assert!(out.iter().all(|&b| b == 0));
    }
}
