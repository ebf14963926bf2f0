//! A session's output: the bounded queue of encoded frames waiting to be
//! written, and the response [`Body`] through which actix-http takes them.
//!
//! The session actor runs in its own actix `Context`, not inside the response
//! body as `actix-web-actors`' `WebsocketContext` would have it. actix-http
//! polls a response body only while the socket takes more, so an actor living
//! in the body stops running (no heartbeat, no timeouts, no shutdown) as soon
//! as a peer stops reading. Here the actor keeps running whatever the socket
//! does, and the body is a thin reader of this queue:
//!
//! - the session [`push`](Outbox::push)es frames it encoded itself (so one
//!   encoded message can be shared by many sessions), up to `limit` bytes;
//!   a frame that would not fit is refused and the session ends as a slow
//!   consumer;
//! - the body hands frames on when actix-http polls it; actix-http copies
//!   them into its write buffer until that holds 32 KiB, then writes, so
//!   frames queued together leave in one write;
//! - every byte the peer acknowledges (the kernel's `TCP_INFO`) shows as
//!   [`progress`](Outbox::progress), which the session's heartbeat samples to
//!   see whether the output has stalled, in our queue or in the kernel's;
//! - [`abort`](Outbox::abort) resets the TCP connection when a close frame
//!   could never be written, because actix-http, blocked on a full socket,
//!   would not poll the body again to learn that it should stop.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use actix::prelude::*;
use bytes::Bytes;
use futures_util::Stream;

/// The connection's socket, recorded by the server when it accepts it (see
/// `server::on_connect`), so that a stalled connection can be reset.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConnSocket(RawFd);

impl ConnSocket {
    pub(crate) fn of(socket: &impl AsRawFd) -> ConnSocket {
        ConnSocket(socket.as_raw_fd())
    }

    /// The kernel's side of the output: bytes it holds for the peer (sent but
    /// not acknowledged, or not yet sent), and bytes the peer has
    /// acknowledged, ever. `None` where the kernel will not say.
    fn kernel_output(self) -> Option<(u64, u64)> {
        // SAFETY: as for `reset`: called only while the body, and so the
        // connection's socket, is alive. `tcp_info` is plain data that the
        // kernel fills up to `len`.
        let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
        let rc = unsafe {
            libc::getsockopt(
                self.0,
                libc::IPPROTO_TCP,
                libc::TCP_INFO,
                (&mut info as *mut libc::tcp_info).cast(),
                &mut len,
            )
        };
        (rc == 0).then(|| {
            let held = u64::from(info.tcpi_notsent_bytes) + u64::from(info.tcpi_unacked);
            (held, info.tcpi_bytes_acked)
        })
    }

    /// Drops the connection at once: linger 0 makes the close a reset that
    /// discards unsent data, and the shutdown wakes actix-http, whose next
    /// read sees the end and whose next write fails, so it closes the socket.
    fn reset(self) {
        // SAFETY: only called while the response body is alive (see
        // `Shared::body_alive`). The body belongs to the HTTP dispatcher that
        // owns this connection's socket, so while it exists the descriptor is
        // open and is this connection's, not a reused number.
        let fd = unsafe { BorrowedFd::borrow_raw(self.0) };
        let socket = socket2::SockRef::from(&fd);
        if let Err(e) = socket
            .set_linger(Some(Duration::ZERO))
            .and_then(|()| socket.shutdown(std::net::Shutdown::Both))
        {
            log::debug!("cannot reset a stalled connection: {e}");
        }
    }
}

/// The body has gone: actix-http dropped the response (the connection ended).
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct TransportClosed;

/// A sample of a session's output (see [`Outbox::progress`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Progress {
    /// Something waits to reach the peer: frames in the queue, or bytes in
    /// the kernel that the peer has not acknowledged.
    pub waiting: bool,
    /// A counter that moves whenever output reaches the peer: the bytes it
    /// acknowledged, or (where the kernel will not say) the frames handed to
    /// actix-http.
    pub moved: u64,
}

/// A frame did not fit in the queue.
#[derive(Debug)]
pub(crate) struct Full;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Frames may be queued.
    Open,
    /// The close frame is queued; nothing may follow it, but the connection
    /// stays up (the peer's close may still come) until `finish`.
    Closed,
    /// No more frames; the body ends once the queue is empty.
    Finishing,
    /// The connection is being reset; the body ends if polled.
    Aborted,
}

struct Shared {
    /// Whole frames, each as its pieces (see `protocol::server_message`).
    frames: VecDeque<(Bytes, Option<Bytes>)>,
    /// The rest of a frame whose head the body has handed on: it goes next,
    /// whatever is discarded, so the stream of frames stays well-formed.
    partial: Option<Bytes>,
    /// Bytes in `frames` and `partial`.
    queued: usize,
    limit: usize,
    /// Frames handed to actix-http, ever.
    taken: u64,
    /// The dispatcher's waker, from the body's last `Pending`; kept (not
    /// taken) so that each message does not clone it again.
    waker: Option<Waker>,
    /// The body returned `Pending` and has not been woken since: the next
    /// frame must wake it, and only that one.
    parked: bool,
    state: State,
    body_alive: bool,
    socket: Option<ConnSocket>,
}

impl Shared {
    /// Drops the whole frames still queued.
    fn clear(&mut self) {
        self.frames.clear();
        self.queued = self.partial.as_ref().map_or(0, Bytes::len);
    }

    fn wake(&mut self) {
        if self.parked {
            self.parked = false;
            if let Some(waker) = &self.waker {
                waker.wake_by_ref();
            }
        }
    }
}

/// The session's side of the queue. Cheap to clone (one `Rc`).
#[derive(Clone)]
pub(crate) struct Outbox {
    shared: Rc<RefCell<Shared>>,
}

impl Outbox {
    /// A queue of at most `limit` bytes and the body that drains it.
    /// `on_closed` hears when actix-http drops the body.
    pub(crate) fn new(
        limit: usize,
        socket: Option<ConnSocket>,
        on_closed: Recipient<TransportClosed>,
    ) -> (Outbox, Body) {
        let shared = Rc::new(RefCell::new(Shared {
            frames: VecDeque::new(),
            partial: None,
            queued: 0,
            limit,
            taken: 0,
            waker: None,
            parked: false,
            state: State::Open,
            body_alive: true,
            socket,
        }));
        let body = Body {
            shared: shared.clone(),
            on_closed,
        };
        (Outbox { shared }, body)
    }

    /// Queues one encoded frame, given as its pieces in order (see
    /// `protocol::server_message`). A frame always fits in an empty queue (the
    /// largest is bounded by `max_message_size`); otherwise the queue may not
    /// grow past its limit.
    pub(crate) fn push(&self, frame: Bytes, rest: Option<Bytes>) -> Result<(), Full> {
        let mut s = self.shared.borrow_mut();
        if s.state != State::Open {
            return Ok(());
        }
        let len = frame.len() + rest.as_ref().map_or(0, Bytes::len);
        if s.queued > 0 && s.queued + len > s.limit {
            return Err(Full);
        }
        s.queued += len;
        s.frames.push_back((frame, rest));
        s.wake();
        Ok(())
    }

    /// Queues the last frame (a close), beyond the limit if need be: it is
    /// at most 127 bytes, and nothing follows it.
    pub(crate) fn push_last(&self, frame: Bytes) {
        let mut s = self.shared.borrow_mut();
        if s.state != State::Open {
            return;
        }
        s.queued += frame.len();
        s.frames.push_back((frame, None));
        s.state = State::Closed;
        s.wake();
    }

    /// Drops every frame not yet begun (whole frames only, so the stream of
    /// frames stays well-formed).
    pub(crate) fn discard(&self) {
        self.shared.borrow_mut().clear();
    }

    /// No more frames: the body ends, and actix-http closes the connection,
    /// once what is queued has been handed on.
    pub(crate) fn finish(&self) {
        let mut s = self.shared.borrow_mut();
        if matches!(s.state, State::Open | State::Closed) {
            s.state = State::Finishing;
            s.wake();
        }
    }

    /// Resets the connection now, discarding whatever is queued.
    pub(crate) fn abort(&self) {
        let mut s = self.shared.borrow_mut();
        s.partial = None;
        s.clear();
        s.state = State::Aborted;
        if s.body_alive {
            match s.socket {
                Some(socket) => socket.reset(),
                // A server built without `server::on_connect`: the body ends
                // when actix-http next polls it.
                None => log::debug!("no socket recorded; the connection ends when next polled"),
            }
        }
        s.wake();
    }

    /// Bytes waiting to be handed on.
    pub(crate) fn queued(&self) -> usize {
        self.shared.borrow().queued
    }

    /// Where the output stands, for the heartbeat's stall check.
    pub(crate) fn progress(&self) -> Progress {
        let s = self.shared.borrow();
        let kernel = match s.socket {
            Some(socket) if s.body_alive => socket.kernel_output(),
            _ => None,
        };
        match kernel {
            // What the peer acknowledges is the truth: frames handed to the
            // kernel "move" for as long as its buffer has room, read or not.
            Some((held, acked)) => Progress {
                waiting: s.queued > 0 || held > 0,
                moved: acked,
            },
            None => Progress {
                waiting: s.queued > 0,
                moved: s.taken,
            },
        }
    }

    /// Whether the connection is still there and has frames still to take.
    pub(crate) fn is_pending(&self) -> bool {
        let s = self.shared.borrow();
        s.body_alive && (s.partial.is_some() || !s.frames.is_empty())
    }
}

/// The response body of the 101 answer: the frames, as actix-http takes them.
pub(crate) struct Body {
    shared: Rc<RefCell<Shared>>,
    on_closed: Recipient<TransportClosed>,
}

impl Stream for Body {
    type Item = Result<Bytes, std::io::Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let mut s = self.shared.borrow_mut();
        let next = match s.partial.take() {
            Some(rest) => Some(rest),
            None => s.frames.pop_front().map(|(head, rest)| {
                s.partial = rest;
                head
            }),
        };
        if let Some(piece) = next {
            s.queued -= piece.len();
            s.taken += 1;
            return Poll::Ready(Some(Ok(piece)));
        }
        match s.state {
            State::Open | State::Closed => {
                s.parked = true;
                if !s.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                    s.waker = Some(cx.waker().clone());
                }
                Poll::Pending
            }
            // After an abort the socket is already reset; ending the body
            // (rather than failing it) keeps actix-http from logging an error
            // for what was our decision.
            State::Finishing | State::Aborted => Poll::Ready(None),
        }
    }
}

impl Drop for Body {
    fn drop(&mut self) {
        let mut s = self.shared.borrow_mut();
        s.body_alive = false;
        s.partial = None;
        s.clear();
        s.waker = None;
        self.on_closed.do_send(TransportClosed);
    }
}

#[cfg(test)]
mod tests {
    use futures_util::{FutureExt, StreamExt};

    use super::*;

    struct Listener;
    impl Actor for Listener {
        type Context = actix::Context<Self>;
    }
    impl Handler<TransportClosed> for Listener {
        type Result = ();
        fn handle(&mut self, _: TransportClosed, _: &mut Self::Context) {}
    }

    fn outbox(limit: usize) -> (Outbox, Body) {
        Outbox::new(limit, None, Listener.start().recipient())
    }

    /// What the body yields now: a piece, the end (`Some(None)`), or
    /// nothing yet (`None`).
    fn poll(body: &mut Body) -> Option<Option<Bytes>> {
        body.next()
            .now_or_never()
            .map(|item| item.map(|r| r.expect("no error")))
    }

    #[actix_rt::test]
    async fn discarding_keeps_the_frame_already_begun_whole() {
        let (out, mut body) = outbox(1 << 20);
        let head = Bytes::from_static(b"head");
        let tail = Bytes::from_static(b"tail");
        out.push(head.clone(), Some(tail.clone())).unwrap();
        out.push(Bytes::from_static(b"next"), None).unwrap();
        assert_eq!(out.queued(), 12);
        assert_eq!(poll(&mut body), Some(Some(head)));
        out.discard();
        // The begun frame's rest still goes; the next frame does not.
        assert_eq!(poll(&mut body), Some(Some(tail)));
        assert_eq!(poll(&mut body), None);
        assert_eq!(out.queued(), 0);
        out.push_last(Bytes::from_static(b"close"));
        out.finish();
        assert_eq!(poll(&mut body), Some(Some(Bytes::from_static(b"close"))));
        assert_eq!(poll(&mut body), Some(None));
    }

    #[actix_rt::test]
    async fn the_queue_refuses_what_would_pass_its_limit_but_never_an_empty_queue() {
        let (out, mut body) = outbox(10);
        // Larger than the limit, but the queue is empty.
        out.push(Bytes::from(vec![0; 50]), None).unwrap();
        assert!(out.push(Bytes::from_static(b"x"), None).is_err());
        assert_eq!(poll(&mut body).flatten().map(|b| b.len()), Some(50));
        out.push(Bytes::from(vec![0; 6]), None).unwrap();
        out.push(Bytes::from(vec![0; 4]), None).unwrap();
        assert!(out.push(Bytes::from_static(b"y"), None).is_err());
        // A close always fits: nothing follows it.
        out.push_last(Bytes::from_static(b"close"));
        assert_eq!(out.queued(), 15);
    }
}
