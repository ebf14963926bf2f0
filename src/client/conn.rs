//! The connection loop: WebSocket in, events out, no terminal in sight.
//!
//! Reading and writing run concurrently so that a server which answers while
//! we are still sending (an echo server fed a long pipeline) never deadlocks
//! us: a writer task owns the sink and drains two queues, control frames
//! first (pongs, close), then the caller's [`Command`]s; the loop in [`run`]
//! owns the read half, gets whole messages from the decoder (fragments
//! joined, inflated when compressed), answers pings, and decides how the
//! connection ended. The frames themselves are `wire`'s.

use std::io;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use bytestring::ByteString;
use futures_util::FutureExt;
use tokio::sync::{mpsc, oneshot};
use tokio::time::{Instant, sleep_until};

use super::Connection;
use super::wire::{Outgoing, ReadError, Writer};
use crate::protocol::{self, Event as Received, code, opcode};

/// What the caller wants sent, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Text(String),
    Binary(Bytes),
    Ping(Bytes),
    Pong(Bytes),
    /// Start the closing handshake with this code and reason.
    Close(u16, String),
}

/// What happened on the connection, for the caller to show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event<'a> {
    /// Shared, so an output may keep a large message without copying it.
    Text(&'a ByteString),
    Binary(&'a Bytes),
    /// Only reported when [`LoopOptions::report_ping_pong`] is set.
    Ping(&'a [u8]),
    /// `rtt` is set when the pong answers one of our `--ping-interval` pings.
    Pong {
        data: &'a [u8],
        rtt: Option<Duration>,
    },
    /// The server's close frame; `code` is None when it carried none.
    Close {
        code: Option<u16>,
        reason: &'a str,
        server_first: bool,
    },
}

/// Where events go. An error stops the loop; `BrokenPipe` means the reader
/// went away (`wsc URL | head -1`) and ends the connection quietly.
///
/// The loop must never block on its output (pongs would stop), so an output
/// buffers: [`Output::event`] only formats, [`Output::flush`] hands a batch
/// on, and [`Output::ready`] is how a full output holds the loop back.
pub trait Output {
    /// Shows one event (into a buffer; must not block).
    fn event(&mut self, event: Event<'_>) -> io::Result<()>;
    /// Hands on what was buffered. Called before the loop waits for the
    /// network, so a burst of frames read at once costs one hand-over.
    fn flush(&mut self) -> io::Result<()>;
    /// Resolves when the output can take more. Until then the loop reads no
    /// frames, but still handles interrupts and its close deadline.
    fn ready(&self) -> impl Future<Output = io::Result<()>>;
}

/// The loop's settings.
#[derive(Debug, Clone)]
pub struct LoopOptions {
    pub max_message_size: usize,
    pub ping_interval: Option<Duration>,
    /// How long to wait for the server's close frame after sending ours.
    pub close_timeout: Duration,
    pub report_ping_pong: bool,
}

/// How the connection ended. [`Ending::exit_code`] maps it to `wsc`'s status.
#[derive(Debug)]
pub enum Ending {
    /// A closing handshake completed. `ours` is the code we sent, if we
    /// started it; `code` is the server's (None: no code in its frame).
    Closed {
        ours: Option<u16>,
        code: Option<u16>,
        reason: String,
    },
    /// We sent a close frame and the server did not answer in time.
    CloseTimeout(Duration),
    /// The TCP connection ended without a close frame.
    Dropped,
    /// The server broke the protocol, or the socket failed; we sent `code`.
    Failed { code: u16, cause: String },
    /// Interrupted twice: we stopped without waiting for the server.
    Interrupted,
    /// Our stdout reader went away; not an error.
    OutputClosed,
    /// Writing our output failed for another reason.
    OutputFailed(io::Error),
}

impl Ending {
    /// 0 for a normal close (1000, 1001, no code, or the server echoing the
    /// code we chose) and for a closed stdout; 1 when stdout fails; 3 for every
    /// other ending.
    pub fn exit_code(&self) -> i32 {
        match self {
            Ending::Closed { ours, code, .. } => {
                let normal = matches!(code, None | Some(code::NORMAL | code::GOING_AWAY))
                    || (ours.is_some() && *ours == *code);
                if normal {
                    crate::exit::OK
                } else {
                    crate::exit::ABNORMAL
                }
            }
            Ending::OutputClosed => crate::exit::OK,
            Ending::OutputFailed(_) => crate::exit::FAILURE,
            _ => crate::exit::ABNORMAL,
        }
    }
}

/// The most frames handled between two looks at interrupts and timers (and
/// two flushes of the output) while frames keep arriving.
const READ_BATCH: usize = 256;

/// The most messages put into one socket write while more are queued.
const WRITE_BATCH: usize = 256;

/// Marks our own pings so a pong can be matched to the time it was sent:
/// the payload is this tag and the send time in nanoseconds since start.
const PING_TAG: &[u8; 3] = b"wsc";

/// Runs the connection until it ends. `input` closing means "no more to
/// send": the loop then sends close 1000. Each value on `interrupts` starts
/// the closing handshake; a second one stops at once. Every event is handed
/// on (`out.flush()`) before this returns.
pub async fn run<O: Output>(
    conn: Connection,
    opts: &LoopOptions,
    input: mpsc::Receiver<Vec<Command>>,
    interrupts: mpsc::UnboundedReceiver<()>,
    out: &mut O,
) -> Ending {
    let ending = drive(conn, opts, input, interrupts, out).await;
    match out.flush() {
        Ok(()) => ending,
        Err(e) => ending.with_output_error(e),
    }
}

async fn drive<O: Output>(
    conn: Connection,
    opts: &LoopOptions,
    input: mpsc::Receiver<Vec<Command>>,
    mut interrupts: mpsc::UnboundedReceiver<()>,
    out: &mut O,
) -> Ending {
    let started = Instant::now();
    let Connection {
        reader: mut stream,
        writer: sink,
        ..
    } = conn;
    let (control, control_rx) = mpsc::unbounded_channel();
    let (close_sent_tx, mut close_sent) = oneshot::channel();
    let mut writer = Some(actix_rt::spawn(write_loop(
        sink,
        control_rx,
        input,
        close_sent_tx,
        opts.ping_interval,
        started,
    )));
    let mut ours: Option<u16> = None;
    let mut deadline = Instant::now();
    let mut interrupted = false;
    let mut close_channel_open = true;
    let mut batched = 0;

    let ending = loop {
        // Frames that are already readable are handled without a trip
        // through select!, and shown with one flush once none is left.
        let ready = if batched < READ_BATCH {
            stream.next().now_or_never()
        } else {
            None
        };
        let frame = match ready {
            Some(frame) => {
                batched += 1;
                frame
            }
            None => {
                batched = 0;
                if let Err(e) = out.flush() {
                    break output_error(e);
                }
                tokio::select! {
                    frame = async {
                        out.ready().await?;
                        Ok::<_, io::Error>(stream.next().await)
                    } => match frame {
                        Ok(frame) => frame,
                        Err(e) => break output_error(e),
                    },
                    sent = &mut close_sent, if close_channel_open => {
                        close_channel_open = false;
                        // Err: the writer stopped without sending a close (the socket
                        // failed); the read side will report how.
                        if let Ok(code) = sent {
                            ours = Some(code);
                            deadline = Instant::now() + opts.close_timeout;
                        }
                        continue;
                    }
                    () = sleep_until(deadline), if ours.is_some() => {
                        break Ending::CloseTimeout(opts.close_timeout);
                    }
                    Some(()) = interrupts.recv() => {
                        if interrupted || ours.is_some() {
                            return Ending::Interrupted;
                        }
                        interrupted = true;
                        let _ = control.send(close(code::NORMAL, ""));
                        continue;
                    }
                }
            }
        };
        let frame = match frame {
            Ok(frame) => frame,
            Err(ReadError::Eof) => break Ending::Dropped,
            Err(ReadError::Io(io)) => {
                break Ending::Failed {
                    code: code::ABNORMAL,
                    cause: super::io_cause(&io),
                };
            }
            Err(ReadError::Violation(v)) => {
                let cause = match v.code {
                    code::TOO_BIG => format!(
                        "the server sent a message over {} bytes (--max-message-size)",
                        opts.max_message_size
                    ),
                    code::INVALID_PAYLOAD => format!("invalid data from the server: {}", v.reason),
                    _ => format!("protocol error from the server: {}", v.reason),
                };
                return fail(&control, &mut writer, opts, ours, (v.code, ""), cause).await;
            }
        };
        match frame {
            Received::Text(bytes) => match ByteString::try_from(bytes) {
                Ok(text) => {
                    if let Err(e) = out.event(Event::Text(&text)) {
                        break output_error(e);
                    }
                }
                // The decoder checked it as it came in; this cannot fail.
                Err(_) => {
                    let cause = "the server sent text that is not UTF-8".to_owned();
                    let close = (code::INVALID_PAYLOAD, "");
                    return fail(&control, &mut writer, opts, ours, close, cause).await;
                }
            },
            Received::Binary(bytes) => {
                if let Err(e) = out.event(Event::Binary(&bytes)) {
                    break output_error(e);
                }
            }
            Received::Ping(data) => {
                if ours.is_none() {
                    let _ = control.send(Outgoing::new(opcode::PONG, data.clone()));
                }
                if opts.report_ping_pong
                    && let Err(e) = out.event(Event::Ping(&data))
                {
                    break output_error(e);
                }
            }
            Received::Pong(data) => {
                if opts.report_ping_pong {
                    let rtt = rtt(&data, started);
                    if let Err(e) = out.event(Event::Pong { data: &data, rtt }) {
                        break output_error(e);
                    }
                }
            }
            Received::Close(frame) => {
                if close_channel_open && let Ok(code) = close_sent.try_recv() {
                    ours = Some(code);
                }
                let (code, reason) = match frame {
                    Some(f) => (Some(f.code), f.reason),
                    None => (None, String::new()),
                };
                let server_first = ours.is_none();
                let shown = out.event(Event::Close {
                    code,
                    reason: &reason,
                    server_first,
                });
                if server_first {
                    // Echo the server's code (RFC 6455 section 5.5.1).
                    let echo = Outgoing::close(code.map(|c| (c, "")));
                    finish(&control, &mut writer, opts.close_timeout, Some(echo)).await;
                }
                if let Err(e) = shown {
                    break output_error(e);
                }
                break Ending::Closed { ours, code, reason };
            }
        }
    };
    match &ending {
        // The server expects our close (or needs none); either way, do not
        // leave without giving the writer a chance to flush.
        Ending::OutputClosed | Ending::OutputFailed(_) if ours.is_none() => {
            finish(
                &control,
                &mut writer,
                opts.close_timeout,
                Some(close(code::NORMAL, "")),
            )
            .await;
        }
        _ => {}
    }
    ending
}

/// Fails the connection for `cause`: sends close (code, reason) unless we
/// already sent one, gives the writer a bounded time to flush, and says so.
async fn fail(
    control: &mpsc::UnboundedSender<Outgoing>,
    writer: &mut Option<actix_rt::task::JoinHandle<()>>,
    opts: &LoopOptions,
    ours: Option<u16>,
    (code, reason): (u16, &str),
    cause: String,
) -> Ending {
    let last = ours.is_none().then(|| close(code, reason));
    finish(control, writer, opts.close_timeout, last).await;
    Ending::Failed { code, cause }
}

/// Queues a final control frame and gives the writer a bounded time to put
/// it on the wire before the caller exits.
async fn finish(
    control: &mpsc::UnboundedSender<Outgoing>,
    writer: &mut Option<actix_rt::task::JoinHandle<()>>,
    bound: Duration,
    last: Option<Outgoing>,
) {
    if let Some(msg) = last {
        let _ = control.send(msg);
    }
    if let Some(writer) = writer.take() {
        let _ = tokio::time::timeout(bound, writer).await;
    }
}

impl Ending {
    /// This ending, given that writing the output then failed with `e`: a
    /// failure the reader did not cause wins; a reader that went away
    /// (`BrokenPipe`) changes nothing about how the connection ended.
    pub fn with_output_error(self, e: io::Error) -> Ending {
        match self {
            Ending::OutputClosed | Ending::OutputFailed(_) => self,
            _ if e.kind() == io::ErrorKind::BrokenPipe => self,
            _ => Ending::OutputFailed(e),
        }
    }
}

fn output_error(e: io::Error) -> Ending {
    if e.kind() == io::ErrorKind::BrokenPipe {
        Ending::OutputClosed
    } else {
        Ending::OutputFailed(e)
    }
}

fn close(code: u16, reason: &str) -> Outgoing {
    Outgoing::close(Some((code, reason)))
}

fn ping_payload(started: Instant) -> Bytes {
    let nanos = started.elapsed().as_nanos() as u64;
    let mut payload = BytesMut::with_capacity(11);
    payload.extend_from_slice(PING_TAG);
    payload.extend_from_slice(&nanos.to_be_bytes());
    payload.freeze()
}

/// The round-trip time if `pong` answers one of our pings.
fn rtt(pong: &[u8], started: Instant) -> Option<Duration> {
    let nanos = pong.strip_prefix(PING_TAG.as_slice())?;
    let sent = u64::from_be_bytes(nanos.try_into().ok()?);
    started.elapsed().checked_sub(Duration::from_nanos(sent))
}

/// Owns the write half. Control frames go first; after a close frame
/// nothing more is sent. Input ending means "close with 1000". Messages
/// already queued when one is sent go into the same socket write (up to
/// [`WRITE_BATCH`]), so a fast pipeline costs a write per batch, not per line.
async fn write_loop(
    mut sink: Writer,
    mut control: mpsc::UnboundedReceiver<Outgoing>,
    mut input: mpsc::Receiver<Vec<Command>>,
    close_sent: oneshot::Sender<u16>,
    ping_interval: Option<Duration>,
    started: Instant,
) {
    let mut ticker = ping_interval.map(|d| tokio::time::interval_at(Instant::now() + d, d));
    let mut batch = Vec::new().into_iter();
    loop {
        let mut msg = tokio::select! {
            biased;
            msg = control.recv() => match msg {
                Some(msg) => msg,
                None => return,
            },
            _ = async { ticker.as_mut()?.tick().await; Some(()) }, if ticker.is_some() => {
                Outgoing::new(opcode::PING, ping_payload(started))
            }
            msg = next_input(&mut batch, &mut input) => msg,
        };
        let mut fed = 0;
        loop {
            let close_code = msg.close_code();
            if let Err(e) = sink.feed(&msg).await {
                log::debug!("write failed: {e}");
                return;
            }
            if let Some(code) = close_code {
                if let Err(e) = sink.flush().await {
                    log::debug!("write failed: {e}");
                    return;
                }
                log::debug!("sent close {code} ({})", protocol::close_code_name(code));
                let _ = close_sent.send(code);
                return;
            }
            fed += 1;
            let queued = if fed < WRITE_BATCH {
                queued_message(&mut control, &mut batch, &mut input)
            } else {
                None
            };
            match queued {
                Some(next) => msg = next,
                None => break,
            }
        }
        if let Err(e) = sink.flush().await {
            log::debug!("write failed: {e}");
            return;
        }
    }
}

/// The next input message, waiting for a new batch when this one is used up.
/// Cancel-safe: a command leaves `batch` only in a poll that returns it.
async fn next_input(
    batch: &mut std::vec::IntoIter<Command>,
    input: &mut mpsc::Receiver<Vec<Command>>,
) -> Outgoing {
    loop {
        if let Some(cmd) = batch.next() {
            return message(cmd);
        }
        match input.recv().await {
            Some(cmds) => *batch = cmds.into_iter(),
            None => return close(code::NORMAL, ""),
        }
    }
}

/// A message that can be sent without waiting: control first, then input.
fn queued_message(
    control: &mut mpsc::UnboundedReceiver<Outgoing>,
    batch: &mut std::vec::IntoIter<Command>,
    input: &mut mpsc::Receiver<Vec<Command>>,
) -> Option<Outgoing> {
    if let Ok(msg) = control.try_recv() {
        return Some(msg);
    }
    loop {
        if let Some(cmd) = batch.next() {
            return Some(message(cmd));
        }
        match input.try_recv() {
            Ok(cmds) => *batch = cmds.into_iter(),
            Err(mpsc::error::TryRecvError::Empty) => return None,
            Err(mpsc::error::TryRecvError::Disconnected) => {
                return Some(close(code::NORMAL, ""));
            }
        }
    }
}

fn message(cmd: Command) -> Outgoing {
    match cmd {
        // The string's bytes become the payload as they are: no copy.
        Command::Text(text) => Outgoing::new(opcode::TEXT, text),
        Command::Binary(data) => Outgoing::new(opcode::BINARY, data),
        Command::Ping(data) => Outgoing::new(opcode::PING, data),
        Command::Pong(data) => Outgoing::new(opcode::PONG, data),
        Command::Close(code, reason) => close(code, &reason),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_pings_are_recognised_by_their_tag() {
        let started = Instant::now();
        let payload = ping_payload(started);
        assert!(rtt(&payload, started).is_some());
        assert!(rtt(b"someone else's", started).is_none());
    }

    #[test]
    fn exit_codes_follow_the_close_code() {
        let closed = |ours, code| Ending::Closed {
            ours,
            code,
            reason: String::new(),
        };
        assert_eq!(closed(Some(1000), Some(1000)).exit_code(), 0);
        assert_eq!(closed(None, Some(1001)).exit_code(), 0);
        assert_eq!(closed(None, None).exit_code(), 0);
        assert_eq!(closed(Some(4000), Some(4000)).exit_code(), 0);
        assert_eq!(closed(None, Some(1011)).exit_code(), 3);
        assert_eq!(closed(Some(1000), Some(1011)).exit_code(), 3);
        assert_eq!(Ending::Dropped.exit_code(), 3);
        assert_eq!(Ending::OutputClosed.exit_code(), 0);
    }
}
