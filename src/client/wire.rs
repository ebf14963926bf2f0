//! The client's end of the wire once the opening handshake is done: frames
//! read with protocol's [`Decoder`] (which inflates them when
//! permessage-deflate was agreed) and written masked with protocol's
//! [`encode_frame`] or, for compressed messages, its [`Compressor`].
//!
//! Why not awc's codec past the handshake: it has no RSV1, so no extension
//! can run on it. awc still does the HTTP upgrade (TLS, proxies, headers,
//! auth) and then hands over its socket and whatever it read past the
//! response ([`super::connect`]); from there on this module speaks
//! WebSocket, with or without compression, on one code path.

use std::io;

use awc::BoxedSocket;
use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufWriter, ReadHalf, WriteHalf};

use crate::protocol::deflate::Compressor;
use crate::protocol::{Decoder, Event, Violation, close_payload, code, encode_frame, opcode};

/// How much is read from the socket at a time.
const READ_CHUNK: usize = 64 * 1024;

/// Small frames are gathered into one socket write up to this size; larger
/// ones go straight to the socket.
const WRITE_BUFFER: usize = 64 * 1024;

/// A frame buffer larger than this after a big message is given back, so one
/// large message does not hold its memory for the rest of the connection.
const KEEP_SCRATCH: usize = 1 << 20;

/// One frame to send, before masking (and compressing): its opcode and
/// payload. A text message keeps the bytes of its `String`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Outgoing {
    pub(crate) opcode: u8,
    pub(crate) payload: Bytes,
}

impl Outgoing {
    pub(crate) fn new(opcode: u8, payload: impl Into<Bytes>) -> Outgoing {
        Outgoing {
            opcode,
            payload: payload.into(),
        }
    }

    /// A close frame with `code` and `reason`, or none (an empty close
    /// frame, to echo a server's close that carried no code).
    pub(crate) fn close(status: Option<(u16, &str)>) -> Outgoing {
        let payload = status.map_or_else(Vec::new, |(code, reason)| close_payload(code, reason));
        Outgoing::new(opcode::CLOSE, payload)
    }

    /// The code of a close frame as sent (1005 for one without a code);
    /// `None` for every other frame.
    pub(crate) fn close_code(&self) -> Option<u16> {
        if self.opcode != opcode::CLOSE {
            return None;
        }
        Some(match self.payload.get(..2) {
            Some(&[hi, lo]) => u16::from_be_bytes([hi, lo]),
            _ => code::NO_STATUS,
        })
    }
}

/// Why reading stopped.
#[derive(Debug)]
pub(crate) enum ReadError {
    /// The server closed the TCP connection.
    Eof,
    Io(io::Error),
    /// The server broke a rule; the connection must be failed with its code.
    Violation(Violation),
}

/// The read half: whole events out of the socket.
pub(crate) struct Reader {
    io: ReadHalf<BoxedSocket>,
    decoder: Decoder,
    /// Bytes read and not yet decoded.
    input: Bytes,
    buf: BytesMut,
}

impl Reader {
    /// `leftover` is what the handshake read past the response head: frames
    /// the server sent at once.
    pub(crate) fn new(io: ReadHalf<BoxedSocket>, decoder: Decoder, leftover: BytesMut) -> Reader {
        Reader {
            io,
            decoder,
            input: leftover.freeze(),
            buf: BytesMut::new(),
        }
    }

    /// The next whole event (fragments joined, inflated when compressed),
    /// reading as needed. Cancel-safe: the only await is a read that keeps
    /// its bytes only when it completes, and decoding happens after it.
    pub(crate) async fn next(&mut self) -> Result<Event, ReadError> {
        loop {
            if !self.input.is_empty() {
                // The decoder takes every byte it is given before it asks
                // for more, so `input` is empty whenever this is `None`.
                if let Some(event) = self
                    .decoder
                    .decode(&mut self.input)
                    .map_err(ReadError::Violation)?
                {
                    return Ok(event);
                }
            }
            self.buf.reserve(READ_CHUNK);
            match self.io.read_buf(&mut self.buf).await {
                Ok(0) => return Err(ReadError::Eof),
                Ok(_) => self.input = self.buf.split().freeze(),
                Err(e) => return Err(ReadError::Io(e)),
            }
        }
    }
}

/// The write half: masked frames, data frames compressed when agreed.
pub(crate) struct Writer {
    io: BufWriter<WriteHalf<BoxedSocket>>,
    /// permessage-deflate's compressor for what we send, when agreed.
    compressor: Option<Compressor>,
    masks: Masks,
    /// The frame being encoded (masking needs a copy of the payload).
    scratch: Vec<u8>,
}

impl Writer {
    pub(crate) fn new(io: WriteHalf<BoxedSocket>, compressor: Option<Compressor>) -> Writer {
        Writer {
            io: BufWriter::with_capacity(WRITE_BUFFER, io),
            compressor,
            masks: Masks::new(),
            scratch: Vec::new(),
        }
    }

    /// Queues one frame; [`Writer::flush`] puts it on the wire (a large one
    /// may go at once). Control frames are never compressed (RFC 7692
    /// section 6.1), nor data frames the compressor leaves plain (short
    /// ones).
    pub(crate) async fn feed(&mut self, frame: &Outgoing) -> io::Result<()> {
        let mask = self.masks.next()?;
        if frame.opcode < opcode::CLOSE
            && let Some(compressor) = &mut self.compressor
            && let Some(bytes) = compressor.frame(frame.opcode, &[&frame.payload], Some(mask))
        {
            return self.io.write_all(&bytes).await;
        }
        self.scratch.clear();
        encode_frame(&mut self.scratch, frame.opcode, &frame.payload, Some(mask));
        let written = self.io.write_all(&self.scratch).await;
        if self.scratch.capacity() > KEEP_SCRATCH {
            self.scratch = Vec::new();
        }
        written
    }

    pub(crate) async fn flush(&mut self) -> io::Result<()> {
        self.io.flush().await
    }
}

/// Masking keys from the operating system's random source (RFC 6455
/// section 10.3 wants keys an intermediary cannot predict), fetched a few
/// hundred at a time rather than with a system call per frame.
struct Masks {
    pool: [u8; 256],
    used: usize,
}

impl Masks {
    fn new() -> Masks {
        Masks {
            pool: [0; 256],
            used: 256,
        }
    }

    fn next(&mut self) -> io::Result<[u8; 4]> {
        if self.used + 4 > self.pool.len() {
            getrandom::fill(&mut self.pool)
                .map_err(|e| io::Error::other(format!("no random bytes for frame masks: {e}")))?;
            self.used = 0;
        }
        let mut mask = [0; 4];
        mask.copy_from_slice(&self.pool[self.used..self.used + 4]);
        self.used += 4;
        Ok(mask)
    }
}

/// Splits the upgraded socket into its two halves, with the decoder and
/// compressor the handshake agreed on.
pub(crate) fn split(
    io: BoxedSocket,
    leftover: BytesMut,
    decoder: Decoder,
    compressor: Option<Compressor>,
) -> (Reader, Writer) {
    let (read, write) = tokio::io::split(io);
    (
        Reader::new(read, decoder, leftover),
        Writer::new(write, compressor),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_frames_carry_their_code_and_others_none() {
        assert_eq!(
            Outgoing::close(Some((1000, "bye"))).close_code(),
            Some(1000)
        );
        assert_eq!(Outgoing::close(None).close_code(), Some(code::NO_STATUS));
        assert_eq!(Outgoing::new(opcode::TEXT, "x").close_code(), None);
    }

    #[test]
    fn masks_differ_from_frame_to_frame() {
        let mut masks = Masks::new();
        let keys: Vec<[u8; 4]> = (0..200).map(|_| masks.next().expect("mask")).collect();
        let mut distinct = keys.clone();
        distinct.sort();
        distinct.dedup();
        // 200 random 32-bit keys collide with odds of about 1 in 200,000.
        assert!(distinct.len() >= 199, "{} distinct", distinct.len());
    }
}
