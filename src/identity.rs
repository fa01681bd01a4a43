//! Who is asking: maps a channel identity to a configured person.
//!
//! Every inbound adapter knows only the identity its platform vouches for
//! (an email address that passed authentication, a Slack user ID from a signed
//! request, the console operator). The engine asks this directory who that is
//! and which roles they hold; an identity that maps to nobody is denied.

use crate::config::PersonConfig;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// The dashboard channel's name (see `web::dashboard`).
const DASHBOARD: &str = "dashboard";

/// A resolved person, as the engine and the audit log see them.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Person {
    /// Display name used in outcomes and the audit log.
    pub name: String,
    /// Roles that commands are checked against.
    pub roles: Vec<String>,
}

impl Person {
    /// True when the person holds any of `allowed` (case-insensitive).
    pub fn has_any_role(&self, allowed: &[String]) -> bool {
        self.roles
            .iter()
            .any(|r| allowed.iter().any(|a| a.eq_ignore_ascii_case(r)))
    }
}

/// Lookup from `(channel, identity)` to person.
#[derive(Debug, Clone, Default)]
pub struct Directory {
    people: Vec<Person>,
    by_identity: HashMap<(String, String), usize>,
}

impl Directory {
    /// Builds the directory from `[[people]]` in the config.
    pub fn new(config: &[PersonConfig]) -> Self {
        let mut dir = Directory::default();
        for p in config {
            let idx = dir.people.len();
            dir.people.push(Person {
                name: p.name.clone(),
                roles: p.roles.clone(),
            });
            // The dashboard's sign-in link proves who someone is; their
            // dashboard identity is their name.
            dir.by_identity.insert(key(DASHBOARD, &p.name), idx);
            for (channel, ids) in &p.identities {
                for id in ids {
                    dir.by_identity.insert(key(channel, id), idx);
                }
            }
        }
        dir
    }

    /// The person behind an identity on a channel. Identities compare
    /// case-insensitively: email addresses are, and platform IDs are unique
    /// regardless of case.
    pub fn resolve(&self, channel: &str, identity: &str) -> Option<&Person> {
        self.by_identity
            .get(&key(channel, identity))
            .and_then(|&i| self.people.get(i))
    }

    /// All people, for `status` and tests.
    pub fn people(&self) -> &[Person] {
        &self.people
    }
}

fn key(channel: &str, id: &str) -> (String, String) {
    (channel.to_ascii_lowercase(), id.trim().to_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn resolves_case_insensitively() {
        let dir = Directory::new(&[PersonConfig {
            name: "alice".into(),
            roles: vec!["master".into()],
            identities: BTreeMap::from([("email".into(), vec!["Alice@Example.com".into()])]),
        }]);
        let p = dir
            .resolve("email", "alice@example.COM")
            .map(|p| p.name.clone());
        assert_eq!(p.as_deref(), Some("alice"));
        assert!(dir.resolve("slack", "alice@example.com").is_none());
        assert!(dir.people()[0].has_any_role(&["MASTER".into()]));
    }
}
