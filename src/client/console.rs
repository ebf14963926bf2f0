//! The terminal side of `wsc`: where commands come from (stdin lines, `-x`,
//! `--slash`), how events are shown, and the prompt.
//!
//! Three output styles:
//! - **terminal** (stdin and stdout are TTYs): a `> ` prompt, received
//!   messages marked `< `, control characters escaped so a message cannot
//!   drive the terminal. An incoming message clears the prompt line
//!   (`\r\x1b[2K`), prints itself and re-prints the prompt. The terminal stays
//!   in cooked mode (no line editor): text typed but not yet sent vanishes
//!   from view when a message arrives, yet is still in the terminal's line
//!   buffer and is sent on Enter; Ctrl-R (the terminal's "reprint") shows it.
//! - **pipe**: stdout carries the received messages and nothing else, one per
//!   line, as they arrive; no prompt, no colour, no marks.
//! - **json**: one JSON object per event on stdout.

use std::io::{self, BufRead, IsTerminal, Write};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use base64::Engine;
use base64::prelude::BASE64_STANDARD;
use bytes::Bytes;
use tokio::sync::mpsc;

use super::conn::{self, Command, Ending, Event, LoopOptions, Output};
use super::{ConnectError, Options, close_text, stdout};
use crate::protocol::{self, code};

/// How many payload bytes a binary message shows as hex.
const HEX_PREVIEW: usize = 16;

/// Batches of input lines read ahead of the socket. Few: stdin is read only
/// as fast as the connection takes it.
const INPUT_QUEUE: usize = 8;

/// The most lines in one batch handed from the stdin thread to the
/// connection. A batch holds the lines already in the read buffer, so one
/// hand-over (and one wake-up of the connection) carries many lines.
const INPUT_BATCH: usize = 1024;

/// stdin's read buffer: one read takes this much of a fast pipeline.
const STDIN_BUFFER: usize = 64 << 10;

/// The console's settings (the terminal-facing half of `wsc`'s flags).
#[derive(Debug, Clone, Default)]
pub struct Settings {
    /// Send lines as binary messages instead of text.
    pub binary_input: bool,
    /// Write received binary payloads to stdout as they are.
    pub raw_binary: bool,
    pub json: bool,
    pub show_ping_pong: bool,
    pub slash: bool,
    /// `-x`: send these instead of reading stdin.
    pub execute: Vec<String>,
    /// After the last message, wait this long before closing.
    pub wait: Duration,
    pub ping_interval: Option<Duration>,
    pub close_timeout: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Style {
    Terminal,
    Pipe,
    Json,
}

/// Connects, runs the connection with stdin (or `-x`) as input and stdout as
/// output, reports how it ended on stderr, and returns that ending.
pub async fn run(opts: Options, settings: Settings) -> Result<Ending, ConnectError> {
    let conn = super::connect(&opts).await?;
    let terminal = io::stdin().is_terminal() && io::stdout().is_terminal();
    let style = if settings.json {
        Style::Json
    } else if terminal {
        Style::Terminal
    } else {
        Style::Pipe
    };
    let color = style == Style::Terminal && std::env::var_os("NO_COLOR").is_none();
    // Every byte for stdout goes through this writer thread, so a slow
    // reader cannot stall the connection (see `stdout`).
    let writer = stdout::Writer::start(io::stdout()).map_err(|e| ConnectError::Connect {
        url: opts.url_text.clone(),
        cause: format!("cannot start the stdout writer: {e}"),
    })?;
    let out = writer.queue().clone();
    let prompt = (style == Style::Terminal && settings.execute.is_empty())
        .then(|| Arc::new(Prompt::new(color, out.clone())));
    if opts.compress && conn.deflate.is_none() {
        // A server may decline any extension; like a browser, go on without.
        note("the server declined permessage-deflate; sending uncompressed");
    }
    if style == Style::Terminal {
        let mut protocol = conn
            .protocol
            .as_deref()
            .map_or_else(String::new, |p| format!(", subprotocol {p}"));
        if conn.deflate.is_some() {
            protocol.push_str(", permessage-deflate");
        }
        let keys = if prompt.is_some() {
            "; Ctrl-D or Ctrl-C closes"
        } else {
            ""
        };
        note(&format!("connected to {}{protocol}{keys}", opts.url_text));
    }

    let (tx, rx) = mpsc::channel(INPUT_QUEUE);
    let parse = LineParser {
        binary: settings.binary_input,
        slash: settings.slash,
    };
    if settings.execute.is_empty() {
        read_stdin(tx, parse, prompt.clone(), settings.wait);
    } else {
        let messages = settings.execute.clone();
        let wait = settings.wait;
        actix_rt::spawn(async move {
            let mut batch = Vec::new();
            for line in messages {
                match parse.parse(line.as_bytes()) {
                    Ok(cmd) => batch.push(cmd),
                    Err(e) => note(&e),
                }
            }
            if tx.send(batch).await.is_err() {
                return;
            }
            tokio::time::sleep(wait).await;
        });
    }
    let (int_tx, int_rx) = mpsc::unbounded_channel();
    actix_rt::spawn(async move {
        while tokio::signal::ctrl_c().await.is_ok() {
            if int_tx.send(()).is_err() {
                return;
            }
        }
    });

    if let Some(prompt) = &prompt {
        prompt.show();
    }
    let mut printer = Printer {
        style,
        raw_binary: settings.raw_binary,
        color,
        prompt: prompt.clone(),
        out,
        batch: Vec::new(),
    };
    let loop_opts = LoopOptions {
        max_message_size: opts.max_message_size,
        ping_interval: settings.ping_interval,
        close_timeout: settings.close_timeout,
        report_ping_pong: settings.show_ping_pong,
    };
    let mut ending = conn::run(conn, &loop_opts, rx, int_rx, &mut printer).await;
    if let Some(prompt) = &prompt {
        prompt.retire();
    }
    // Nothing received is lost at exit: wait until stdout has taken it all
    // (or its reader went away).
    if let Err(e) = writer.finish() {
        ending = ending.with_output_error(e);
    }
    if let Some(text) = describe(&ending, &opts.url_text, style) {
        note(&text);
    }
    Ok(ending)
}

/// One line on stderr. Errors are ignored: there is nowhere left to report them.
fn note(text: &str) {
    let _ = writeln!(io::stderr().lock(), "wsc: {text}");
}

/// The stderr line for how the connection ended, if it deserves one.
fn describe(ending: &Ending, url: &str, style: Style) -> Option<String> {
    Some(match ending {
        // A close the server started is reported as it arrives.
        Ending::Closed { ours: None, .. } => return None,
        Ending::Closed { code, reason, .. } => {
            if ending.exit_code() == crate::exit::OK && style != Style::Terminal {
                return None;
            }
            format!("disconnected: {}", close_text(*code, reason))
        }
        Ending::CloseTimeout(d) => format!(
            "no close reply from the server within {}; dropped the connection",
            humantime::format_duration(*d)
        ),
        Ending::Dropped => format!("connection to {url} dropped without a close frame"),
        Ending::Failed { code, cause } if *code == code::ABNORMAL => {
            format!("connection to {url} failed: {cause}")
        }
        Ending::Failed { code, cause } => format!("{cause}; closed with {code}"),
        Ending::Interrupted => "interrupted; dropped the connection".to_owned(),
        Ending::OutputClosed => return None,
        Ending::OutputFailed(e) => format!("cannot write to stdout: {}", super::io_cause(e)),
    })
}

/// Turns input lines into commands: data, or `--slash` commands.
#[derive(Debug, Clone, Copy)]
struct LineParser {
    binary: bool,
    slash: bool,
}

/// The most a control frame may carry (RFC 6455 section 5.5).
const MAX_CONTROL: usize = 125;

impl LineParser {
    fn parse(&self, line: &[u8]) -> Result<Command, String> {
        let data = match line.strip_prefix(b"/") {
            Some(rest) if self.slash && rest.starts_with(b"/") => rest,
            Some(_) if self.slash => return self.slash_command(line),
            _ => line,
        };
        if self.binary {
            return Ok(Command::Binary(Bytes::copy_from_slice(data)));
        }
        match std::str::from_utf8(data) {
            Ok(text) => Ok(Command::Text(text.to_owned())),
            Err(_) => Err("skipped a line that is not UTF-8 (send it with --binary)".to_owned()),
        }
    }

    fn slash_command(&self, line: &[u8]) -> Result<Command, String> {
        let line = std::str::from_utf8(line).map_err(|_| "a command must be UTF-8".to_owned())?;
        let (name, arg) = line.split_once(' ').unwrap_or((line, ""));
        let control = |arg: &str| {
            if arg.len() > MAX_CONTROL {
                Err(format!("{name}: at most {MAX_CONTROL} bytes of data"))
            } else {
                Ok(Bytes::copy_from_slice(arg.as_bytes()))
            }
        };
        match name {
            "/ping" => Ok(Command::Ping(control(arg)?)),
            "/pong" => Ok(Command::Pong(control(arg)?)),
            "/close" => {
                let arg = arg.trim_start();
                if arg.is_empty() {
                    return Ok(Command::Close(code::NORMAL, String::new()));
                }
                let (code, reason) = arg.split_once(' ').unwrap_or((arg, ""));
                let code = code
                    .parse::<u16>()
                    .ok()
                    .filter(|c| protocol::is_valid_close_code(*c))
                    .ok_or_else(|| {
                        format!("/close: {code:?} is not a close code one may send (1000-1003, 1007-1014, 3000-4999)")
                    })?;
                if 2 + reason.len() > MAX_CONTROL {
                    return Err(format!(
                        "/close: the reason may be at most {} bytes",
                        MAX_CONTROL - 2
                    ));
                }
                Ok(Command::Close(code, reason.to_owned()))
            }
            _ => Err(format!(
                "unknown command {name}: use /ping [data], /pong [data], /close [code [reason]], or // to send a line starting with /"
            )),
        }
    }
}

/// Reads stdin on its own thread (a blocking read must never stall the actix
/// runtime). Closing the channel after EOF (and `wait`) tells the connection
/// loop to close with 1000.
fn read_stdin(
    tx: mpsc::Sender<Vec<Command>>,
    parse: LineParser,
    prompt: Option<Arc<Prompt>>,
    wait: Duration,
) {
    std::thread::spawn(move || {
        let mut stdin = io::BufReader::with_capacity(STDIN_BUFFER, io::stdin().lock());
        let mut line = Vec::new();
        let mut batch = Vec::new();
        loop {
            line.clear();
            match stdin.read_until(b'\n', &mut line) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    log::warn!("reading stdin: {e}");
                    break;
                }
            }
            if line.last() == Some(&b'\n') {
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
            }
            if let Some(prompt) = &prompt {
                prompt.entered();
            }
            match parse.parse(&line) {
                Ok(cmd) => batch.push(cmd),
                Err(e) => match &prompt {
                    Some(prompt) => {
                        let _ = prompt.print(&format!("wsc: {e}"));
                    }
                    None => note(&e),
                },
            }
            // Hand the batch over once the next line would need a read.
            let more_buffered = stdin.buffer().contains(&b'\n');
            if !batch.is_empty()
                && (!more_buffered || batch.len() >= INPUT_BATCH)
                && tx.blocking_send(std::mem::take(&mut batch)).is_err()
            {
                return;
            }
        }
        if !batch.is_empty() && tx.blocking_send(batch).is_err() {
            return;
        }
        std::thread::sleep(wait);
        drop(tx);
    });
}

/// The `> ` prompt, shared by the stdin thread (which re-shows it after each
/// line) and the printer (which clears and re-shows it around a message).
struct Prompt {
    color: bool,
    /// stdout's queue: the prompt and the messages around it go through the
    /// same queue, so they reach the terminal in the order written here.
    out: Arc<stdout::Queue>,
    /// Whether the prompt is on screen, and whether it may be shown at all.
    state: Mutex<PromptState>,
}

#[derive(Default)]
struct PromptState {
    visible: bool,
    retired: bool,
}

impl Prompt {
    fn new(color: bool, out: Arc<stdout::Queue>) -> Self {
        Prompt {
            color,
            out,
            state: Mutex::new(PromptState::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, PromptState> {
        // A panic while holding the lock leaves nothing inconsistent here.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn prompt_bytes(&self) -> &'static [u8] {
        if self.color {
            b"\x1b[1m>\x1b[0m "
        } else {
            b"> "
        }
    }

    fn show(&self) {
        let mut state = self.lock();
        if state.visible || state.retired {
            return;
        }
        if self.out.push(self.prompt_bytes()).is_ok() {
            state.visible = true;
        }
    }

    /// The user pressed Enter: the cursor is on a fresh line.
    fn entered(&self) {
        self.lock().visible = false;
        self.show();
    }

    /// Prints `line` above the prompt.
    fn print(&self, line: &str) -> io::Result<()> {
        let mut state = self.lock();
        let mut bytes = Vec::with_capacity(line.len() + 32);
        if state.visible {
            bytes.extend_from_slice(b"\r\x1b[2K");
        }
        bytes.extend_from_slice(line.as_bytes());
        bytes.push(b'\n');
        state.visible = false;
        if !state.retired {
            bytes.extend_from_slice(self.prompt_bytes());
            state.visible = true;
        }
        self.out.push(&bytes)
    }

    /// The connection is over: clear the prompt and never show it again.
    fn retire(&self) {
        let mut state = self.lock();
        state.retired = true;
        if state.visible {
            let _ = self.out.push(b"\r\x1b[2K");
            state.visible = false;
        }
    }
}

/// One `--json` line. A struct rather than a map so that `type` comes first.
#[derive(Debug, Default, serde::Serialize)]
struct JsonEvent<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<std::borrow::Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    len: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rtt_ms: Option<f64>,
    /// `Some(None)` is a close without a code: `"code": null`.
    #[serde(skip_serializing_if = "Option::is_none")]
    code: Option<Option<u16>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'a str>,
}

/// Shows events on stdout (and ping/pong in pipe style on stderr). Events
/// are formatted into `batch`, which [`Output::flush`] hands to the stdout
/// writer thread in one piece.
struct Printer {
    style: Style,
    raw_binary: bool,
    color: bool,
    prompt: Option<Arc<Prompt>>,
    out: Arc<stdout::Queue>,
    batch: Vec<u8>,
}

/// The largest batch buffer kept for the next batch (memory of a burst is
/// given back).
const KEEP_BATCH: usize = 1 << 20;

/// A message at least this large goes to the stdout queue as it came off
/// the socket, shared rather than copied into the batch.
const SHARE_FROM: usize = 64 << 10;

impl Printer {
    /// A line on the terminal, above the prompt if there is one.
    fn terminal_line(&mut self, line: &str) -> io::Result<()> {
        match self.prompt.clone() {
            Some(prompt) => {
                // Whatever is batched comes first.
                Output::flush(self)?;
                prompt.print(line)
            }
            None => self.plain_line(line.as_bytes()),
        }
    }

    /// A payload as it is: copied into the batch when small, shared with the
    /// stdout queue (after the batch) when large.
    fn raw(&mut self, data: &Bytes) -> io::Result<()> {
        if data.len() < SHARE_FROM {
            self.batch.extend_from_slice(data);
            return Ok(());
        }
        Output::flush(self)?;
        self.out.push_bytes(data.clone())
    }

    fn plain_line(&mut self, line: &[u8]) -> io::Result<()> {
        self.batch.extend_from_slice(line);
        self.batch.push(b'\n');
        Ok(())
    }

    fn json(&mut self, value: &JsonEvent<'_>) -> io::Result<()> {
        serde_json::to_writer(&mut self.batch, value)?;
        self.batch.push(b'\n');
        Ok(())
    }

    fn mark(&self) -> &'static str {
        if self.color {
            "\x1b[32m<\x1b[0m "
        } else {
            "< "
        }
    }
}

impl Output for Printer {
    fn flush(&mut self) -> io::Result<()> {
        if self.batch.is_empty() {
            return self.out.check();
        }
        // The next batch starts at about this one's size, without keeping
        // the memory of a burst.
        let next = Vec::with_capacity(self.batch.len().min(KEEP_BATCH));
        self.out
            .push_bytes(Bytes::from(std::mem::replace(&mut self.batch, next)))
    }

    fn ready(&self) -> impl Future<Output = io::Result<()>> {
        self.out.wait_for_space()
    }

    fn event(&mut self, event: Event<'_>) -> io::Result<()> {
        let b64 = |data: &[u8]| BASE64_STANDARD.encode(data);
        let json = |kind| JsonEvent {
            kind,
            ..JsonEvent::default()
        };
        match (self.style, event) {
            (Style::Json, Event::Text(text)) => self.json(&JsonEvent {
                data: Some((&**text).into()),
                ..json("text")
            }),
            (Style::Json, Event::Binary(data)) => self.json(&JsonEvent {
                data: Some(b64(data).into()),
                len: Some(data.len()),
                ..json("binary")
            }),
            (Style::Json, Event::Ping(data)) => self.json(&JsonEvent {
                data: Some(b64(data).into()),
                ..json("ping")
            }),
            (Style::Json, Event::Pong { data, rtt }) => self.json(&JsonEvent {
                data: Some(b64(data).into()),
                rtt_ms: rtt.map(|d| d.as_secs_f64() * 1000.0),
                ..json("pong")
            }),
            (
                Style::Json,
                Event::Close {
                    code,
                    reason,
                    server_first,
                },
            ) => {
                self.json(&JsonEvent {
                    code: Some(code),
                    reason: Some(reason),
                    ..json("close")
                })?;
                if server_first {
                    note(&format!(
                        "server closed the connection: {}",
                        close_text(code, reason)
                    ));
                }
                Ok(())
            }
            (_, Event::Binary(data)) if self.raw_binary => self.raw(data),
            (Style::Pipe, Event::Text(text)) => {
                self.raw(text.as_bytes())?;
                self.batch.push(b'\n');
                Ok(())
            }
            (Style::Pipe, Event::Binary(data)) => self.plain_line(binary_preview(data).as_bytes()),
            (Style::Terminal, Event::Text(text)) => {
                let line = format!("{}{}", self.mark(), escape_controls(text));
                self.terminal_line(&line)
            }
            (Style::Terminal, Event::Binary(data)) => {
                let line = format!("{}{}", self.mark(), binary_preview(data));
                self.terminal_line(&line)
            }
            (style, Event::Ping(_) | Event::Pong { .. }) => {
                let text = control_text(event);
                if style == Style::Terminal {
                    let line = format!("{}{text}", self.mark());
                    self.terminal_line(&line)
                } else {
                    // Pipe: stdout is for messages only.
                    let _ = writeln!(io::stderr().lock(), "{text}");
                    Ok(())
                }
            }
            (
                _,
                Event::Close {
                    code,
                    reason,
                    server_first,
                },
            ) => {
                if server_first {
                    if let Some(prompt) = &self.prompt {
                        prompt.retire();
                    }
                    note(&format!(
                        "server closed the connection: {}",
                        close_text(code, reason)
                    ));
                }
                Ok(())
            }
        }
    }
}

/// `[ping 3 bytes] 61 62 63`, `[pong] rtt 0.41 ms`.
fn control_text(event: Event<'_>) -> String {
    match event {
        Event::Ping(data) => hex_summary("ping", data),
        Event::Pong { rtt: Some(rtt), .. } => {
            format!("[pong] rtt {:.2} ms", rtt.as_secs_f64() * 1000.0)
        }
        Event::Pong { data, .. } => hex_summary("pong", data),
        _ => String::new(),
    }
}

/// `[binary 5 bytes] 00 01 02 03 04`: a terminal-safe summary.
fn binary_preview(data: &[u8]) -> String {
    hex_summary("binary", data)
}

/// `[KIND N bytes]` and a hex preview of the first [`HEX_PREVIEW`] bytes.
fn hex_summary(kind: &str, data: &[u8]) -> String {
    let unit = if data.len() == 1 { "byte" } else { "bytes" };
    let mut text = format!("[{kind} {} {unit}]", data.len());
    for b in data.iter().take(HEX_PREVIEW) {
        text.push_str(&format!(" {b:02x}"));
    }
    if data.len() > HEX_PREVIEW {
        text.push_str(" ...");
    }
    text
}

/// Escapes control characters (escape sequences, carriage returns) so a
/// message cannot move the cursor or recolour the terminal. Newlines stay,
/// indented under the `< ` mark.
fn escape_controls(text: &str) -> String {
    if !text.chars().any(char::is_control) {
        return text.to_owned();
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\n  "),
            '\t' => out.push('\t'),
            c if c.is_control() => out.extend(c.escape_default()),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parser(slash: bool) -> LineParser {
        LineParser {
            binary: false,
            slash,
        }
    }

    #[test]
    fn lines_are_text_unless_binary() {
        assert_eq!(parser(false).parse(b"hi"), Ok(Command::Text("hi".into())));
        assert_eq!(parser(false).parse(b""), Ok(Command::Text(String::new())));
        assert_eq!(
            parser(false).parse(b"/ping"),
            Ok(Command::Text("/ping".into()))
        );
        assert!(parser(false).parse(b"\xff").is_err());
        let binary = LineParser {
            binary: true,
            slash: false,
        };
        assert_eq!(
            binary.parse(b"\xff"),
            Ok(Command::Binary(Bytes::from_static(b"\xff")))
        );
    }

    #[test]
    fn slash_commands() {
        let p = parser(true);
        assert_eq!(p.parse(b"/ping"), Ok(Command::Ping(Bytes::new())));
        assert_eq!(
            p.parse(b"/ping abc"),
            Ok(Command::Ping(Bytes::from_static(b"abc")))
        );
        assert_eq!(
            p.parse(b"/pong x"),
            Ok(Command::Pong(Bytes::from_static(b"x")))
        );
        assert_eq!(p.parse(b"/close"), Ok(Command::Close(1000, String::new())));
        assert_eq!(
            p.parse(b"/close 4000 bye now"),
            Ok(Command::Close(4000, "bye now".into()))
        );
        assert!(p.parse(b"/close 1005").is_err());
        assert!(p.parse(b"/close abc").is_err());
        assert!(p.parse(b"/nope").is_err());
        assert_eq!(p.parse(b"//ping"), Ok(Command::Text("/ping".into())));
        assert!(
            p.parse(format!("/ping {}", "x".repeat(126)).as_bytes())
                .is_err()
        );
    }

    #[test]
    fn binary_is_summarised_in_hex() {
        assert_eq!(
            binary_preview(&[0, 1, 2, 3, 4]),
            "[binary 5 bytes] 00 01 02 03 04"
        );
        assert_eq!(binary_preview(&[]), "[binary 0 bytes]");
        let long: Vec<u8> = (0..20).collect();
        assert!(binary_preview(&long).ends_with("0e 0f ..."));
    }

    #[test]
    fn control_characters_cannot_reach_the_terminal() {
        assert_eq!(escape_controls("plain"), "plain");
        assert_eq!(escape_controls("a\x1b[2Jb"), "a\\u{1b}[2Jb");
        assert_eq!(escape_controls("one\ntwo"), "one\n  two");
    }
}
