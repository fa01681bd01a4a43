//! Standard input and output for the console, read off the async runtime.
//!
//! tokio's `stdin()` reads on a blocking-pool thread that the runtime waits
//! for at shutdown, so Ctrl-C or SIGTERM left qmoi alive until Enter was
//! pressed (or a pipe closed). Here a plain OS thread reads the lines and
//! hands them over a channel; at exit nothing waits for it. On a terminal
//! the thread runs a line editor (rustyline: prompt, editing, history) whose
//! output goes through rustyline's printer so notifications do not garble
//! the prompt; Ctrl-C and Ctrl-D there raise SIGINT, the same path as a
//! Ctrl-C anywhere else.

use super::Output;
use std::io::{BufRead, IsTerminal, Write};
use std::pin::Pin;
use std::sync::{Arc, Mutex as StdMutex};
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};
use tokio::sync::Mutex;

/// The prompt shown on a terminal.
pub const PROMPT: &str = "qmoi> ";

/// Lines from a reader thread, as an `AsyncRead` (one `\n`-terminated line per message).
pub struct LineReader {
    rx: UnboundedReceiver<String>,
    pending: Vec<u8>,
    pos: usize,
}

impl AsyncRead for LineReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if self.pos >= self.pending.len() {
            match self.rx.poll_recv(cx) {
                Poll::Ready(Some(line)) => {
                    self.pending = line.into_bytes();
                    self.pending.push(b'\n');
                    self.pos = 0;
                }
                Poll::Ready(None) => return Poll::Ready(Ok(())),
                Poll::Pending => return Poll::Pending,
            }
        }
        let n = buf.remaining().min(self.pending.len() - self.pos);
        let start = self.pos;
        buf.put_slice(&self.pending[start..start + n]);
        self.pos += n;
        Poll::Ready(Ok(()))
    }
}

/// The console's input and output on this process's stdin/stdout.
pub struct Terminal {
    /// Typed lines.
    pub input: tokio::io::BufReader<LineReader>,
    /// Where replies and notifications go.
    pub output: Output,
    /// Whether a line editor runs (stdin and stdout are a terminal).
    pub interactive: bool,
}

/// Starts the reader thread on stdin.
pub fn open() -> Terminal {
    let (tx, rx) = unbounded_channel();
    let reader = LineReader {
        rx,
        pending: Vec::new(),
        pos: 0,
    };
    let interactive = std::io::stdin().is_terminal() && std::io::stdout().is_terminal();
    let editor = interactive
        .then(|| rustyline::DefaultEditor::new().ok())
        .flatten();
    let (output, interactive): (Output, bool) = match editor {
        Some(mut editor) => {
            let printer = editor.create_external_printer().ok();
            spawn(move || edit_lines(editor, tx));
            match printer {
                Some(p) => (Arc::new(Mutex::new(Box::new(PrinterWriter::new(p)))), true),
                None => (Arc::new(Mutex::new(Box::new(tokio::io::stdout()))), true),
            }
        }
        None => {
            spawn(move || plain_lines(tx));
            (Arc::new(Mutex::new(Box::new(tokio::io::stdout()))), false)
        }
    };
    Terminal {
        input: tokio::io::BufReader::new(reader),
        output,
        interactive,
    }
}

fn spawn(f: impl FnOnce() + Send + 'static) {
    if let Err(e) = std::thread::Builder::new()
        .name("qmoi-console".into())
        .spawn(f)
    {
        tracing::warn!(error = %e, "cannot start the console reader; the console is off");
    }
}

/// A pipe or a file: lines until end of input.
fn plain_lines(tx: UnboundedSender<String>) {
    let stdin = std::io::stdin();
    for line in stdin.lock().lines() {
        let Ok(line) = line else { break };
        if tx.send(line).is_err() {
            break;
        }
    }
}

/// A terminal: rustyline with in-memory history; Ctrl-C/Ctrl-D stop qmoi.
fn edit_lines(mut editor: rustyline::DefaultEditor, tx: UnboundedSender<String>) {
    use rustyline::error::ReadlineError;
    loop {
        match editor.readline(PROMPT) {
            Ok(line) => {
                if !line.trim().is_empty() {
                    let _ = editor.add_history_entry(line.as_str());
                }
                if tx.send(line).is_err() {
                    break;
                }
            }
            Err(ReadlineError::Interrupted | ReadlineError::Eof) => {
                // SAFETY: raising a signal at our own process has no memory
                // effects; tokio's handler turns it into the shutdown path.
                unsafe {
                    libc::raise(libc::SIGINT);
                }
                break;
            }
            Err(e) => {
                tracing::warn!(error = %e, "console line editor failed; the console stops listening");
                break;
            }
        }
    }
}

/// Writes whole lines through rustyline's printer (which redraws the prompt).
struct PrinterWriter {
    printer: Arc<StdMutex<Box<dyn rustyline::ExternalPrinter + Send>>>,
    buf: Vec<u8>,
}

impl PrinterWriter {
    fn new(p: impl rustyline::ExternalPrinter + Send + 'static) -> Self {
        PrinterWriter {
            printer: Arc::new(StdMutex::new(Box::new(p))),
            buf: Vec::new(),
        }
    }

    fn emit(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        let text = String::from_utf8_lossy(&std::mem::take(&mut self.buf)).into_owned();
        let sent = self
            .printer
            .lock()
            .ok()
            .and_then(|mut p| p.print(text.clone()).ok());
        if sent.is_none() {
            let _ = std::io::stdout().write_all(text.as_bytes());
        }
    }
}

impl AsyncWrite for PrinterWriter {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.buf.extend_from_slice(data);
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.emit();
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.emit();
        Poll::Ready(Ok(()))
    }
}

/// The terminal's settings at startup, restored at exit in case a signal
/// arrived while the line editor had the terminal in raw mode.
pub struct TermGuard(Option<libc::termios>);

impl TermGuard {
    /// Saves stdin's terminal settings (nothing when stdin is not a terminal).
    pub fn save() -> TermGuard {
        if !std::io::stdin().is_terminal() {
            return TermGuard(None);
        }
        // SAFETY: tcgetattr writes into the zeroed struct we own; fd 0 is stdin.
        unsafe {
            let mut t: libc::termios = std::mem::zeroed();
            (libc::tcgetattr(0, &mut t) == 0)
                .then_some(t)
                .map_or(TermGuard(None), |t| TermGuard(Some(t)))
        }
    }
}

impl Drop for TermGuard {
    fn drop(&mut self) {
        if let Some(t) = &self.0 {
            // SAFETY: restores settings read from the same fd by tcgetattr.
            unsafe {
                libc::tcsetattr(0, libc::TCSANOW, t);
            }
        }
    }
}

/// Terminal width in columns (80 when stdout is not a terminal).
pub fn width() -> usize {
    // SAFETY: TIOCGWINSZ fills the winsize struct we own.
    unsafe {
        let mut ws: libc::winsize = std::mem::zeroed();
        if libc::ioctl(1, libc::TIOCGWINSZ, &mut ws) == 0 && ws.ws_col > 0 {
            return usize::from(ws.ws_col);
        }
    }
    80
}

/// Fits each line of `text` into `width` terminal columns, cutting at a
/// word boundary and marking the cut with "…" (never mid-word when
/// avoidable). Columns are display width, not characters: a CJK character
/// or most emoji take two, a combining mark none.
pub fn fit(text: &str, width: usize) -> String {
    text.lines()
        .map(|l| fit_line(l, width.max(20)))
        .collect::<Vec<_>>()
        .join("\n")
}

fn fit_line(line: &str, width: usize) -> String {
    use unicode_width::{UnicodeWidthChar, UnicodeWidthStr};
    if line.width() <= width {
        return line.to_string();
    }
    // Room for the "…" (one column).
    let mut used = 0;
    let keep: String = line
        .chars()
        .take_while(|c| {
            used += c.width().unwrap_or(0);
            used < width
        })
        .collect();
    let cut = match keep.rfind(' ') {
        Some(at) if keep[..at].width() > width / 2 => keep[..at].trim_end().to_string(),
        _ => keep,
    };
    format!("{cut}…")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_rows_are_cut_at_a_word_and_marked() {
        let row = "#12  approve  alice  2026-12-01 09:00  approved and merged !45 on primary";
        let got = fit(row, 40);
        assert!(got.chars().count() <= 40, "{got}");
        assert!(got.ends_with('…'), "{got}");
        assert!(row.starts_with(got.trim_end_matches('…')), "{got}");
        assert!(
            row[got.trim_end_matches('…').len()..].starts_with(' '),
            "cut mid-word: {got}"
        );
        assert_eq!(fit("short", 40), "short");
    }

    #[test]
    fn width_counts_terminal_columns_not_chars() {
        use unicode_width::UnicodeWidthStr;
        // 30 CJK characters are 60 columns: cut to fit 40.
        let cjk = "合并请求已批准并合并到主分支上了请检查流水线状态然后告诉我结果谢谢";
        let got = fit(cjk, 40);
        assert!(got.width() <= 40, "{} columns: {got}", got.width());
        assert!(got.ends_with('…'), "{got}");
        assert!(got.width() >= 38, "cut too short: {got}");
        // Emoji are two columns each.
        let emoji = format!("status {}", "🚀".repeat(30));
        let got = fit(&emoji, 40);
        assert!(got.width() <= 40, "{} columns: {got}", got.width());
        // A line of 40 columns but only 20 chars of CJK fits exactly.
        let exact: String = cjk.chars().take(20).collect();
        assert_eq!(fit(&exact, 40), exact);
    }

    #[tokio::test]
    async fn line_reader_yields_lines_then_ends() {
        use tokio::io::AsyncBufReadExt;
        let (tx, rx) = unbounded_channel();
        let r = LineReader {
            rx,
            pending: Vec::new(),
            pos: 0,
        };
        tx.send("status".to_string()).ok();
        tx.send("quit".to_string()).ok();
        drop(tx);
        let mut lines = tokio::io::BufReader::new(r).lines();
        assert_eq!(
            lines.next_line().await.ok().flatten().as_deref(),
            Some("status")
        );
        assert_eq!(
            lines.next_line().await.ok().flatten().as_deref(),
            Some("quit")
        );
        assert_eq!(lines.next_line().await.ok().flatten(), None);
    }
}
