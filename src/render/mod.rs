//! Saying things safely on every medium.
//!
//! Everything qmoi shows comes from two places: its own words (templates,
//! labels) and content from outside (job logs, project and branch names,
//! fix descriptions, what people typed). This module is the one place that
//! knows how outside content is made inert on each medium, so no mention,
//! link or formatting can come from it and no code excerpt can break out of
//! its block:
//!
//! - [`escape`]: per-medium escapers and budget-aware cutting that never
//!   splits an entity;
//! - [`markup`]: [`Markup`], text that is safe for one medium by
//!   construction (qmoi's literals plus escaped content, links, code blocks);
//! - [`limits`]: the platforms' published limits, in one place;
//! - [`view`]: the typed data every notification message is rendered from,
//!   with each kind's own fields;
//! - [`slack`]: Block Kit within Slack's limits; [`subject`]: email subjects;
//! - [`degraded()`]: the always-fits form of a queued message, for delivery's
//!   fallback;
//! - templates (`crate::notify::Templates`) auto-escape every value with
//!   the same escapers, so a template cannot forget to.

pub mod degraded;
pub mod escape;
pub mod limits;
pub mod markup;
pub mod slack;
pub mod subject;
pub mod view;

pub use degraded::degraded;
pub use escape::{cut, escape, escape_fit, Fitted, Keep};
pub use markup::Markup;
pub use view::View;

/// A rendering medium: how text is marked up where it is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Medium {
    /// Slack `mrkdwn` text objects and the top-level `text` of a message.
    SlackMrkdwn,
    /// Slack `plain_text` objects and rich-text elements (shown verbatim).
    SlackPlain,
    /// The `text/plain` part of an email.
    EmailText,
    /// The `text/html` part of an email.
    Html,
    /// qmoi's terminal.
    Console,
    /// Discord message content and embed text (Discord's markdown).
    Discord,
}

impl Medium {
    /// Every medium, for tests and snapshot loops.
    pub const ALL: [Medium; 6] = [
        Medium::SlackMrkdwn,
        Medium::SlackPlain,
        Medium::EmailText,
        Medium::Html,
        Medium::Console,
        Medium::Discord,
    ];

    /// The medium of a channel's text templates: `slack` → mrkdwn,
    /// `discord` → Discord markdown, `email` → plain text, anything else is
    /// shown like the console.
    pub fn for_channel(channel: &str) -> Medium {
        match channel {
            "slack" => Medium::SlackMrkdwn,
            "discord" => Medium::Discord,
            "email" => Medium::EmailText,
            _ => Medium::Console,
        }
    }

    /// The medium of a template file: `.html` files are HTML whatever the
    /// channel; other files take the channel's medium.
    pub fn for_template(channel: &str, file: &str) -> Medium {
        if file.ends_with(".html") {
            Medium::Html
        } else {
            Medium::for_channel(channel)
        }
    }

    /// A stable name (the auto-escape mode templates run in).
    pub fn name(self) -> &'static str {
        match self {
            Medium::SlackMrkdwn => "slack-mrkdwn",
            Medium::SlackPlain => "slack-plain",
            Medium::EmailText => "email-text",
            Medium::Html => "html",
            Medium::Console => "console",
            Medium::Discord => "discord",
        }
    }
}
