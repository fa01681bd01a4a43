//! The platforms' published limits, so a message is cut visibly when it is
//! rendered instead of being refused when it is sent (Slack answers
//! `invalid_blocks` and posts nothing; Discord answers 400).

/// Slack Block Kit (Block Kit reference; Slack's SDK validators agree).
pub mod slack {
    /// Blocks per message.
    pub const BLOCKS: usize = 50;
    /// Header `plain_text`.
    pub const HEADER: usize = 150;
    /// Section `text`.
    pub const SECTION: usize = 3000;
    /// Fields per section.
    pub const FIELDS: usize = 10;
    /// One field's text.
    pub const FIELD: usize = 2000;
    /// Button text.
    pub const BUTTON_TEXT: usize = 75;
    /// Button value.
    pub const BUTTON_VALUE: usize = 2000;
    /// `action_id` (also unique per message).
    pub const ACTION_ID: usize = 255;
    /// Elements in one actions block.
    pub const ACTIONS: usize = 25;
    /// Context block elements.
    pub const CONTEXT_ELEMENTS: usize = 10;
    /// Text in one rich-text block, kept to a section's size so a message
    /// stays readable and well within the message size limit.
    pub const RICH_TEXT: usize = 3000;
    /// The top-level `text` fallback qmoi sends (Slack truncates at 40,000;
    /// notifications only need a line).
    pub const FALLBACK: usize = 3000;
}

/// Discord (API reference: message, embed and component limits).
pub mod discord {
    /// Message `content`.
    pub const CONTENT: usize = 2000;
    /// Embeds per message.
    pub const EMBEDS: usize = 10;
    /// Embed title.
    pub const EMBED_TITLE: usize = 256;
    /// Embed description.
    pub const EMBED_DESCRIPTION: usize = 4096;
    /// Fields per embed.
    pub const EMBED_FIELDS: usize = 25;
    /// Field name.
    pub const FIELD_NAME: usize = 256;
    /// Field value.
    pub const FIELD_VALUE: usize = 1024;
    /// Embed footer.
    pub const FOOTER: usize = 2048;
    /// Sum of all embed text in one message.
    pub const EMBED_TOTAL: usize = 6000;
    /// Button label.
    pub const BUTTON_LABEL: usize = 80;
    /// `custom_id` (also unique per message).
    pub const CUSTOM_ID: usize = 100;
    /// Buttons per action row.
    pub const BUTTONS_PER_ROW: usize = 5;
    /// Action rows per message.
    pub const ROWS: usize = 5;
}

/// Email.
pub mod email {
    /// Subject length: RFC 5322's recommended line length; clients cut
    /// around there, so what the reader must decide goes first.
    pub const SUBJECT: usize = 78;
    /// Plain-text line width qmoi wraps its own prose to.
    pub const LINE: usize = 78;
    /// An excerpt in a mail body; the full log is at the link.
    pub const EXCERPT: usize = 4000;
}
