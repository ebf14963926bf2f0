//! Stdout on a thread of its own, behind a bounded queue, so that a slow
//! reader of `wsc`'s output never stalls the connection.
//!
//! The connection loop (and the prompt) append chunks to the [`Queue`]: a
//! batch of small messages, or one large message shared as it came off the
//! socket. One writer thread takes everything queued at once and writes it.
//! While the reader is slow the loop keeps reading the socket, answering
//! pings and sending stdin, and received messages pile up here.
//!
//! **When stdout does not drain.** Up to [`LIMIT`] bytes wait in memory
//! (plus at most the frames of one read batch, since the loop checks for
//! space before a batch; a message larger than the limit is still taken
//! whole). Beyond it,
//! [`Queue::wait_for_space`] makes the connection loop stop reading the
//! socket until the writer catches up: TCP flow control then slows the
//! server down, nothing is dropped, and memory stays bounded. While stopped,
//! wsc cannot see the server's pings either, so a server with a heartbeat may
//! drop the connection if the reader stays away for longer than its timeout
//! after the queue has filled. At exit wsc waits until the queue is written
//! (a reader that never reads, yet keeps the pipe open, keeps wsc waiting, as
//! it would any filter); a reader that goes away (`| head -1`) ends it at once.

use std::io::{self, Write};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

use bytes::Bytes;
use tokio::sync::Notify;

/// The most output held for a slow reader before the connection stops
/// reading from the server: about 250,000 lines of 64 bytes, or 16 s of a
/// 1 MB/s feed.
pub const LIMIT: usize = 16 << 20;

/// The queue between the connection loop and the writer thread.
pub struct Queue {
    state: Mutex<State>,
    /// Wakes the writer thread when bytes arrive or the queue closes.
    work: Condvar,
    /// Wakes the connection loop when the writer has written a batch.
    space: Notify,
    limit: usize,
}

#[derive(Default)]
struct State {
    /// Shared chunks: a batch of small messages, or one large message as
    /// it came off the socket.
    queued: Vec<Bytes>,
    queued_len: usize,
    /// Bytes the writer has taken and not yet finished writing.
    writing: usize,
    /// No more bytes will come: the writer exits once the queue is empty.
    closed: bool,
    /// The write that failed; every later push fails with its kind.
    failed: Option<io::ErrorKind>,
    /// Its message, reported once.
    error: Option<io::Error>,
}

/// The writer thread: join it with [`Writer::finish`] so that nothing queued
/// is lost at exit.
pub struct Writer {
    queue: Arc<Queue>,
    thread: Option<JoinHandle<()>>,
}

impl Queue {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves a list of buffers, which is
        // still consistent.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends a copy of `bytes` (the prompt's few bytes).
    pub fn push(&self, bytes: &[u8]) -> io::Result<()> {
        self.push_bytes(Bytes::copy_from_slice(bytes))
    }

    /// Appends `bytes` without copying them. Never blocks: the bound is
    /// applied by [`Queue::wait_for_space`]. Fails once a write to stdout
    /// has failed.
    pub fn push_bytes(&self, bytes: Bytes) -> io::Result<()> {
        let mut state = self.lock();
        if let Some(kind) = state.failed {
            return Err(take_error(&mut state, kind));
        }
        if bytes.is_empty() {
            return Ok(());
        }
        let was_empty = state.queued.is_empty();
        state.queued_len += bytes.len();
        state.queued.push(bytes);
        drop(state);
        // Only an empty queue can have a sleeping writer behind it.
        if was_empty {
            self.work.notify_one();
        }
        Ok(())
    }

    /// The error of a failed write, if any.
    pub fn check(&self) -> io::Result<()> {
        let mut state = self.lock();
        match state.failed {
            Some(kind) => Err(take_error(&mut state, kind)),
            None => Ok(()),
        }
    }

    /// Waits until the queue holds less than its limit (or a write failed).
    pub async fn wait_for_space(&self) -> io::Result<()> {
        loop {
            // Registered before the check, so a batch written in between
            // still wakes us.
            let notified = self.space.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut state = self.lock();
                if let Some(kind) = state.failed {
                    return Err(take_error(&mut state, kind));
                }
                if state.queued_len + state.writing < self.limit {
                    return Ok(());
                }
            }
            notified.await;
        }
    }

    /// Bytes queued or being written.
    #[cfg(test)]
    fn pending(&self) -> usize {
        let state = self.lock();
        state.queued_len + state.writing
    }
}

fn take_error(state: &mut State, kind: io::ErrorKind) -> io::Error {
    state.error.take().unwrap_or_else(|| kind.into())
}

impl Writer {
    /// Starts the writer thread for `out` (stdout in `wsc`).
    pub fn start(out: impl Write + Send + 'static) -> io::Result<Writer> {
        Writer::with_limit(out, LIMIT)
    }

    fn with_limit(out: impl Write + Send + 'static, limit: usize) -> io::Result<Writer> {
        let queue = Arc::new(Queue {
            state: Mutex::new(State::default()),
            work: Condvar::new(),
            space: Notify::new(),
            limit,
        });
        let shared = queue.clone();
        let thread = std::thread::Builder::new()
            .name("wsc-stdout".into())
            .spawn(move || write_loop(&shared, out))?;
        Ok(Writer {
            queue,
            thread: Some(thread),
        })
    }

    pub fn queue(&self) -> &Arc<Queue> {
        &self.queue
    }

    /// Closes the queue and waits until everything in it is written (or a
    /// write failed). Blocks the calling thread.
    pub fn finish(mut self) -> io::Result<()> {
        self.close();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        self.queue.check()
    }

    fn close(&self) {
        self.queue.lock().closed = true;
        self.queue.work.notify_one();
    }
}

impl Drop for Writer {
    /// Not joined here: a writer stuck on a reader that never reads must not
    /// hang an early return; [`Writer::finish`] is the way to wait.
    fn drop(&mut self) {
        self.close();
    }
}

fn write_loop(queue: &Queue, mut out: impl Write) {
    let mut batch = Vec::new();
    loop {
        {
            let mut state = queue.lock();
            while state.queued.is_empty() && !state.closed {
                state = queue.work.wait(state).unwrap_or_else(|e| e.into_inner());
            }
            if state.queued.is_empty() {
                return;
            }
            std::mem::swap(&mut state.queued, &mut batch);
            state.writing = std::mem::take(&mut state.queued_len);
        }
        let result = batch
            .drain(..)
            .try_for_each(|chunk| out.write_all(&chunk))
            .and_then(|()| out.flush());
        {
            let mut state = queue.lock();
            state.writing = 0;
            if let Err(e) = result {
                state.failed = Some(e.kind());
                state.error = Some(e);
                state.queued = Vec::new();
                state.queued_len = 0;
            }
        }
        queue.space.notify_waiters();
        if queue.lock().failed.is_some() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Duration;

    /// A writer that blocks until the test lets each write through, and
    /// records what it was given.
    struct Gate {
        go: mpsc::Receiver<()>,
        seen: Arc<Mutex<Vec<u8>>>,
    }

    impl Write for Gate {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.go
                .recv()
                .map_err(|_| io::Error::from(io::ErrorKind::BrokenPipe))?;
            self.seen.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn a_blocked_writer_holds_output_until_the_limit_then_everything_arrives_in_order() {
        let (go, rx) = mpsc::channel();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let writer = Writer::with_limit(
            Gate {
                go: rx,
                seen: seen.clone(),
            },
            10,
        )
        .unwrap();
        let queue = writer.queue().clone();
        // Adding never blocks, even past the limit.
        queue.push(b"abc").unwrap();
        queue.push_bytes(Bytes::from_static(b"defgh")).unwrap();
        queue.push_bytes(Bytes::from_static(b"ijklmnop")).unwrap();
        assert!(queue.pending() >= 10);
        let waiting = tokio::time::timeout(Duration::from_millis(50), queue.wait_for_space()).await;
        assert!(waiting.is_err(), "over the limit: the loop must wait");
        // Let the writes through (one per chunk): space appears and nothing
        // is lost.
        for _ in 0..4 {
            go.send(()).unwrap();
        }
        tokio::time::timeout(Duration::from_secs(10), queue.wait_for_space())
            .await
            .expect("space within the bound")
            .unwrap();
        queue.push(b"qr").unwrap();
        writer.finish().unwrap();
        assert_eq!(&seen.lock().unwrap()[..], b"abcdefghijklmnopqr");
    }

    struct Closed;

    impl Write for Closed {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::ErrorKind::BrokenPipe.into())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn a_failed_write_is_reported_to_the_loop() {
        let writer = Writer::start(Closed).unwrap();
        let queue = writer.queue().clone();
        queue.push(b"x\n").unwrap();
        let err = writer.finish().expect_err("the write failed");
        assert_eq!(err.kind(), io::ErrorKind::BrokenPipe);
        let err = queue
            .wait_for_space()
            .await
            .expect_err("the loop hears of it");
        assert_eq!(err.kind(), io::ErrorKind::BrokenPipe);
        assert!(queue.push(b"y\n").is_err());
    }
}
