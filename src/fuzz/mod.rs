//! Fuzzing qmoi's input parsers on stable Rust.
//!
//! Every parser that reads outside input — the command parser, the reply
//! extractor, MIME intake, the GitLab/GitHub webhook parsers and Slack's
//! payload decoding — has a target in [`targets`]: a function taking raw
//! bytes that must return (any answer is fine) and whose properties panic
//! when broken. [`Mutator`] is a small seeded mutation engine (byte flips,
//! splices, inserted "interesting" strings such as `İ`, CRLF or MIME
//! boundaries), so a bounded run is deterministic and part of `cargo test`
//! (`tests/fuzz.rs`); `fuzz/` holds the same targets for cargo-fuzz (libFuzzer,
//! nightly) for long runs. See README "Fuzzing".

pub mod targets;

/// Strings that have broken text parsers before: case mappings that change
/// length (U+0130 lowercases to 3 bytes), combining marks, RTL overrides,
/// line-ending variants, quote markers, MIME and format=flowed syntax,
/// numbers at the edges of `u64`, and qmoi's own command words.
pub const INTERESTING: &[&str] = &[
    "İ",
    "ẞ",
    "ß",
    "ﬃ",
    "Σ",
    "\u{0301}",
    "\u{202e}",
    "\u{200b}",
    "\u{feff}",
    "\u{0}",
    "\r\n",
    "\r",
    "\n\n",
    "> ",
    ">>",
    "-- \n",
    "—",
    "–",
    "：",
    "？",
    "¿",
    "👍",
    "🙂",
    "#",
    "#18446744073709551616",
    "18446744073709551615",
    "-1",
    "/qmoi ",
    "@qmoi ",
    "<@U1>",
    "approve",
    "reject:",
    "retry",
    "don't ",
    "not yet",
    "?",
    "On Tue, Nov 24, 2026 at 12:03 PM QMOI <bot@x.test> wrote:",
    "-----Original Message-----",
    "From: a@b\nSent: x\nTo: y\nSubject: z\n",
    "=\r\n",
    "=3D",
    "=?utf-8?b?w6k=?=",
    "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n",
    "--b--",
    "format=flowed; delsp=yes",
    " \r\n",
    "\\u0000",
    "\"",
    "{",
    "}",
    "[",
    "]",
    "null",
    "1e999",
];

/// A deterministic mutation engine (xorshift64*; the same seed gives the
/// same inputs on every machine).
pub struct Mutator {
    state: u64,
}

impl Mutator {
    /// A mutator whose sequence is fixed by `seed`.
    pub fn new(seed: u64) -> Mutator {
        Mutator { state: seed | 1 }
    }

    /// The next pseudo-random number.
    pub fn next_u64(&mut self) -> u64 {
        self.state ^= self.state >> 12;
        self.state ^= self.state << 25;
        self.state ^= self.state >> 27;
        self.state.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number below `n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next_u64() % n as u64) as usize
        }
    }

    /// One of `items`.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> Option<&'a T> {
        items.get(self.below(items.len()))
    }

    /// A mutant of one of `seeds`: 1–8 edits, sometimes spliced with another seed.
    pub fn mutate(&mut self, seeds: &[&[u8]]) -> Vec<u8> {
        let mut data = self.pick(seeds).map(|s| s.to_vec()).unwrap_or_default();
        for _ in 0..1 + self.below(8) {
            self.edit(&mut data, seeds);
        }
        data
    }

    fn edit(&mut self, data: &mut Vec<u8>, seeds: &[&[u8]]) {
        let at = self.below(data.len() + 1);
        match self.below(7) {
            0 if !data.is_empty() => {
                let i = self.below(data.len());
                data[i] ^= 1 << self.below(8);
            }
            1 if !data.is_empty() => {
                let i = self.below(data.len());
                data[i] = self.next_u64() as u8;
            }
            2 => {
                let s = self.pick(INTERESTING).copied().unwrap_or("");
                data.splice(at..at, s.bytes());
            }
            3 if !data.is_empty() => {
                let end = (at + 1 + self.below(16)).min(data.len());
                data.drain(at.min(end)..end);
            }
            4 => {
                // Splice: a slice of another seed at a random place.
                let other = self.pick(seeds).copied().unwrap_or(&[]);
                let from = self.below(other.len() + 1);
                let to = (from + self.below(64)).min(other.len());
                data.splice(at..at, other[from..to].iter().copied());
            }
            5 if !data.is_empty() => {
                // Duplicate a run (deep nesting, repeated headers).
                let end = (at + 1 + self.below(32)).min(data.len());
                let run: Vec<u8> = data[at.min(end)..end].to_vec();
                data.splice(at..at, run);
            }
            _ => data.truncate(at),
        }
    }
}

/// Runs `target` on `iterations` mutants of `seeds` (and on every seed
/// first). Panics inside the target carry the input in the message of the
/// caller's choice; returns how many inputs ran.
pub fn run(seed: u64, iterations: usize, seeds: &[&[u8]], target: impl Fn(&[u8])) -> usize {
    for s in seeds {
        target(s);
    }
    let mut m = Mutator::new(seed);
    for _ in 0..iterations {
        let input = m.mutate(seeds);
        target(&input);
    }
    seeds.len() + iterations
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mutator_is_deterministic() {
        let seeds: &[&[u8]] = &[b"approve #1", b"reject: flaky"];
        let a: Vec<Vec<u8>> = {
            let mut m = Mutator::new(7);
            (0..50).map(|_| m.mutate(seeds)).collect()
        };
        let mut m = Mutator::new(7);
        let b: Vec<Vec<u8>> = (0..50).map(|_| m.mutate(seeds)).collect();
        assert_eq!(a, b);
        assert!(a
            .iter()
            .any(|x| x.as_slice() != seeds[0] && x.as_slice() != seeds[1]));
    }
}
