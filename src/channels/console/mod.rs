//! The console: a person at qmoi's terminal.
//!
//! Lines typed on standard input are commands from the configured console
//! identity (the operator, who is the master by default); notifications and
//! replies are printed to standard output. When input ends (a service with
//! no terminal), the console stops listening and the bot keeps running.
//! `quit` (or `exit`) stops qmoi; `login` prints a single-use sign-in link
//! for the dashboard. [`terminal`] reads stdin off the runtime.

pub mod terminal;

use crate::command::{Command, Evidence, Origin};
use crate::engine::{Engine, WHOLE_CHANNEL};
use crate::notify::{Channel, Delivered, DeliveryError};
use crate::store::{MessageKind, Outgoing};
use async_trait::async_trait;
use std::sync::Arc;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::Mutex;

/// Channel name.
pub const NAME: &str = "console";

/// How long an outcome may take before the console says it is working.
const SLOW: std::time::Duration = std::time::Duration::from_millis(300);

/// Shared writer for notifications and replies.
pub type Output = Arc<Mutex<Box<dyn AsyncWrite + Send + Unpin>>>;

/// Outbound half: prints messages.
pub struct ConsoleChannel {
    out: Output,
}

impl ConsoleChannel {
    /// Prints to `out`.
    pub fn new(out: Output) -> Self {
        ConsoleChannel { out }
    }
}

#[async_trait]
impl Channel for ConsoleChannel {
    fn name(&self) -> &str {
        NAME
    }

    async fn deliver(&self, _id: u64, message: &Outgoing) -> Result<Delivered, DeliveryError> {
        let mut out = self.out.lock().await;
        // Rendered for the console already; escaped once more at the last
        // step so nothing that reaches the terminal can carry an escape
        // sequence (escaping is idempotent on this medium).
        let text = format!("\n{}\n", shown(message.body.trim_end()));
        out.write_all(text.as_bytes())
            .await
            .map_err(|e| DeliveryError::Retryable {
                reason: format!("console write: {e}"),
                retry_after: None,
            })?;
        out.flush().await.map_err(|e| DeliveryError::Retryable {
            reason: format!("console flush: {e}"),
            retry_after: None,
        })?;
        let thread = match (message.kind, message.notification) {
            (MessageKind::Notification, Some(n)) => Some(format!("console:{n}")),
            _ => message.thread.clone(),
        };
        Ok(Delivered { thread })
    }
}

/// Typed words that stop qmoi instead of being commands.
const QUIT: &[&str] = &["quit", "exit"];

/// Makes the text `login` prints (a dashboard sign-in link, or why not).
/// Handled here, not as a command: a link must only ever be shown at the
/// terminal, never posted to a chat channel.
pub type Login = Arc<dyn Fn() -> String + Send + Sync>;

/// Reads commands from `input` until it ends, printing each reply; `quit`
/// wakes `quit` (the caller stops the bot).
pub async fn listen<R>(
    engine: Engine,
    input: R,
    out: Output,
    identity: String,
    quit: Arc<tokio::sync::Notify>,
    login: Option<Login>,
) where
    R: AsyncBufRead + Unpin,
{
    let mut lines = input.lines();
    let session = uuid::Uuid::new_v4();
    let mut n: u64 = 0;
    loop {
        let line = match lines.next_line().await {
            Ok(Some(l)) => l,
            Ok(None) => break,
            Err(e) => {
                tracing::warn!(error = %e, "console input unreadable; console stops listening");
                break;
            }
        };
        let text = line.trim();
        if text.is_empty() {
            continue;
        }
        if QUIT.contains(&text.to_lowercase().as_str()) {
            print(&out, "→ stopping qmoi").await;
            quit.notify_one();
            break;
        }
        if let (Some(login), true) = (&login, text.eq_ignore_ascii_case("login")) {
            print(&out, &format!("→ {}", login())).await;
            continue;
        }
        n += 1;
        // Each typed line is its own intent: the key is unique per line.
        let cmd = Command::new(
            format!("console:{session}:{n}"),
            Origin {
                channel: NAME.into(),
                identity: identity.clone(),
                thread: Some(WHOLE_CHANNEL.into()),
            },
            text,
            Evidence {
                kind: "console-line".into(),
                reference: format!("session {session} line {n}"),
            },
        );
        let accepted = engine.accept(cmd).await;
        let reply = match accepted.outcome {
            Some(mut rx) => {
                // Instant answers need no "working on it"; slow ones (a
                // forge call) get it so the operator knows it was taken.
                match tokio::time::timeout(SLOW, &mut rx).await {
                    Ok(r) => r.unwrap_or(accepted.ack),
                    Err(_) => {
                        print(&out, &format!("… {}", accepted.ack.text)).await;
                        rx.await.unwrap_or(accepted.ack)
                    }
                }
            }
            None => accepted.ack,
        };
        print(&out, &format!("→ {}", reply.text)).await;
    }
    tracing::info!("console input closed; qmoi keeps running without it");
}

/// `text` as the terminal may show it: control characters (ESC and the
/// sequences it starts) dropped and invisible characters marked, by
/// render's console escaper. Replies carry outside content (project names,
/// job logs, what was typed), so they are never printed raw.
fn shown(text: &str) -> String {
    crate::render::escape(crate::render::Medium::Console, text)
}

async fn print(out: &Output, text: &str) {
    use std::io::IsTerminal;
    let text = shown(text);
    // On a terminal, rows (history, status) fit its width instead of wrapping mid-word.
    let text = if std::io::stdout().is_terminal() {
        terminal::fit(&text, terminal::width())
    } else {
        text
    };
    let mut o = out.lock().await;
    let _ = o.write_all(format!("{text}\n").as_bytes()).await;
    let _ = o.flush().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `print` wrote, through an in-memory pipe.
    async fn printed(text: &str) -> String {
        let (w, mut r) = tokio::io::duplex(1 << 16);
        let out: Output = Arc::new(Mutex::new(Box::new(w)));
        print(&out, text).await;
        drop(out);
        let mut got = String::new();
        tokio::io::AsyncReadExt::read_to_string(&mut r, &mut got)
            .await
            .expect("read");
        got
    }

    #[tokio::test]
    async fn replies_reach_the_terminal_without_escape_sequences() {
        // A title change (OSC), a colour and a clear-screen (CSI), a bell,
        // and a right-to-left override, as a project name might carry them.
        let reply =
            "→ #4 on evil\u{1b}]0;pwned\u{7}/proj \u{1b}[31mred\u{1b}[0m \u{1b}[2J \u{202E}txt.exe";
        let got = printed(reply).await;
        assert!(!got.contains('\u{1b}'), "ESC reached the terminal: {got:?}");
        assert!(!got.contains('\u{7}'), "BEL reached the terminal: {got:?}");
        assert!(
            got.contains("[U+202E]"),
            "bidi override not marked: {got:?}"
        );
        assert!(got.contains("evil]0;pwned/proj"), "{got:?}");
    }

    #[tokio::test]
    async fn deliveries_are_escaped_too() {
        let (w, mut r) = tokio::io::duplex(1 << 16);
        let out: Output = Arc::new(Mutex::new(Box::new(w)));
        let channel = ConsoleChannel::new(out);
        let message = Outgoing {
            notification: Some(1),
            kind: MessageKind::Notification,
            thread: None,
            subject: String::new(),
            body: "[qmoi #1] job failed on \u{1b}[2Jproj".into(),
            answers: Vec::new(),
            data: serde_json::Value::Null,
        };
        channel.deliver(1, &message).await.expect("delivered");
        drop(channel);
        let mut got = String::new();
        tokio::io::AsyncReadExt::read_to_string(&mut r, &mut got)
            .await
            .expect("read");
        assert!(!got.contains('\u{1b}'), "{got:?}");
        assert!(got.contains("job failed on [2Jproj"), "{got:?}");
    }
}
