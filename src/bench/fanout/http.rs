//! The fan-out bench's HTTP publisher: `POST` over one keep-alive HTTP/1.1
//! connection, one request at a time.
//!
//! One connection and no pipelining on purpose: publications must reach the
//! server in the order they are numbered, or the subscribers would see
//! reordering the server did not cause. The cost is that HTTP publishing
//! tops out at one publication per round trip, which is the figure a
//! backend publishing this way would see.

use std::io::Write as _;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::super::conn::{ConnError, Target};

/// The longest response head, and the largest response body, we read: the
/// answer to a publish is a line of JSON.
const MAX_RESPONSE: usize = 64 * 1024;

pub(crate) struct HttpPublisher {
    target: Target,
    /// `None` before the first request and after the server said
    /// `Connection: close`.
    stream: Option<TcpStream>,
    request: Vec<u8>,
    input: BytesMut,
    timeout: Duration,
}

/// The parts of a response head the publisher acts on.
#[derive(Debug, PartialEq, Eq)]
struct Head {
    status: u16,
    status_line: String,
    content_length: usize,
    close: bool,
}

impl HttpPublisher {
    /// Connects at once, so that a wrong URL fails before any subscriber waits.
    pub(crate) async fn open(
        target: Target,
        timeout: Duration,
    ) -> Result<HttpPublisher, ConnError> {
        let stream = connect(&target, timeout).await?;
        Ok(HttpPublisher {
            target,
            stream: Some(stream),
            request: Vec::new(),
            input: BytesMut::new(),
            timeout,
        })
    }

    /// POSTs `body` as `text/plain` and waits for a 2xx answer (within the
    /// timeout). A non-2xx answer is [`ConnError::Refused`], after which the
    /// connection can go on; any other error leaves it unusable.
    pub(crate) async fn post(&mut self, body: &[u8]) -> Result<(), ConnError> {
        self.post_to(None, "text/plain", body).await
    }

    /// [`HttpPublisher::post`] to `resource` (path and query) on the same
    /// server, instead of the URL's, as `content_type`: what the Pusher
    /// publisher sends, each request with a query signed for its body.
    pub(crate) async fn post_to(
        &mut self,
        resource: Option<&str>,
        content_type: &str,
        body: &[u8],
    ) -> Result<(), ConnError> {
        let timeout = self.timeout;
        tokio::time::timeout(timeout, self.post_inner(resource, content_type, body))
            .await
            .map_err(|_| ConnError::Timeout(timeout))?
    }

    async fn post_inner(
        &mut self,
        resource: Option<&str>,
        content_type: &str,
        body: &[u8],
    ) -> Result<(), ConnError> {
        self.request.clear();
        // Writing into a Vec cannot fail.
        let _ = write!(
            self.request,
            "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
            resource.unwrap_or(&self.target.resource),
            self.target.host_header,
            body.len()
        );
        self.request.extend_from_slice(body);
        if self.stream.is_none() {
            self.stream = Some(connect(&self.target, self.timeout).await?);
            self.input.clear();
        }
        let stream = self.stream.as_mut().ok_or(ConnError::Eof)?;
        stream.write_all(&self.request).await?;

        let (head, end) = loop {
            if let Some(found) = parse_head(&self.input)? {
                break found;
            }
            if self.input.len() >= MAX_RESPONSE {
                return Err(ConnError::Http("response head too long".into()));
            }
            if stream.read_buf(&mut self.input).await? == 0 {
                return Err(ConnError::Eof);
            }
        };
        if head.content_length > MAX_RESPONSE {
            return Err(ConnError::Http(format!(
                "a {} byte answer to a publish",
                head.content_length
            )));
        }
        while self.input.len() < end + head.content_length {
            if stream.read_buf(&mut self.input).await? == 0 {
                return Err(ConnError::Eof);
            }
        }
        self.input.advance(end + head.content_length);
        if head.close {
            self.stream = None;
        }
        if (200..300).contains(&head.status) {
            Ok(())
        } else {
            Err(ConnError::Refused(head.status_line))
        }
    }
}

async fn connect(target: &Target, timeout: Duration) -> Result<TcpStream, ConnError> {
    let stream = tokio::time::timeout(timeout, TcpStream::connect(target.addr))
        .await
        .map_err(|_| ConnError::Timeout(timeout))??;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// The head at the start of `input` and its length, once it is complete.
/// Only `Content-Length` bodies: chunked answers are refused (none of the
/// servers this bench targets sends one for a publish).
fn parse_head(input: &[u8]) -> Result<Option<(Head, usize)>, ConnError> {
    let Some(pos) = input.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Ok(None);
    };
    let text = String::from_utf8_lossy(&input[..pos]);
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or_default().to_owned();
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| ConnError::Http(format!("bad status line {status_line:?}")))?;
    let mut content_length = None;
    let mut close = false;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let (name, value) = (name.trim(), value.trim());
        if name.eq_ignore_ascii_case("content-length") {
            let n = value
                .parse::<usize>()
                .map_err(|_| ConnError::Http(format!("bad Content-Length {value:?}")))?;
            content_length = Some(n);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(ConnError::Http(format!(
                "Transfer-Encoding {value:?} is not supported, only Content-Length"
            )));
        } else if name.eq_ignore_ascii_case("connection") {
            close = value.eq_ignore_ascii_case("close");
        }
    }
    let head = Head {
        status,
        status_line,
        // No length and no chunking: an empty body (204, or a bare 200).
        content_length: content_length.unwrap_or(0),
        close,
    };
    Ok(Some((head, pos + 4)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_response_head_gives_status_length_and_close() {
        assert!(matches!(
            parse_head(b"HTTP/1.1 200 OK\r\nContent-"),
            Ok(None)
        ));
        let input =
            b"HTTP/1.1 200 OK\r\ncontent-length: 12\r\nconnection: close\r\n\r\n{\"ok\":true}\n";
        let (head, end) = parse_head(input).expect("valid").expect("complete");
        assert_eq!(
            head,
            Head {
                status: 200,
                status_line: "HTTP/1.1 200 OK".into(),
                content_length: 12,
                close: true
            }
        );
        assert_eq!(&input[end..], b"{\"ok\":true}\n");
        let (head, _) = parse_head(b"HTTP/1.1 503 Busy\r\n\r\n")
            .expect("valid")
            .expect("complete");
        assert_eq!(
            (head.status, head.content_length, head.close),
            (503, 0, false)
        );
        assert!(parse_head(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n").is_err());
        assert!(parse_head(b"nonsense\r\n\r\n").is_err());
    }
}
