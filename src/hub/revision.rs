//! Revisions as the user names them (`main`, `v1.0`, `refs/pr/1`, a commit)
//! and commit ids as the hub answers them, each validated once before it
//! goes into a URL or a manifest.

use std::fmt;
use std::str::FromStr;

use crate::exit::{Diagnostic, ExitStatus};
use crate::ids::parse_hex;

/// A branch, tag or commit to pull; `main` unless `--revision` says otherwise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revision(String);

/// Longer than any ref name the hub makes.
const MAX_REVISION_LEN: usize = 200;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid revision `{}`: {reason}", text.escape_debug())]
pub struct RevisionError {
    pub text: String,
    pub reason: &'static str,
}

impl Diagnostic for RevisionError {
    fn hint(&self) -> Option<String> {
        Some("give a branch, tag or commit as the hub shows it, e.g. `main`, `v1.0`, `refs/pr/1` or a 40-digit commit id".into())
    }

    fn exit_status(&self) -> ExitStatus {
        ExitStatus::Usage
    }
}

impl Revision {
    pub fn main() -> Revision {
        Revision("main".into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The commit this revision names, when it is a full commit id.
    pub fn as_commit(&self) -> Option<CommitId> {
        self.0.parse().ok()
    }

    /// The revision as one URL path segment (`refs/pr/1` → `refs%2Fpr%2F1`);
    /// every other character it may hold is already URL-safe.
    pub fn url_segment(&self) -> String {
        self.0.replace('/', "%2F")
    }
}

impl fmt::Display for Revision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for Revision {
    type Err = RevisionError;

    /// Git's ref-name rules, narrowed to what is safe in a URL path without
    /// escaping: ASCII letters, digits and `-._+/`, no empty `/` parts, no `..`.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let fail = |reason| Err(RevisionError { text: text.into(), reason });
        if text.is_empty() {
            return fail("it is empty");
        }
        if text.len() > MAX_REVISION_LEN {
            return fail("it is longer than 200 characters");
        }
        if !text.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._+/".contains(&b)) {
            return fail("only letters, digits and `-._+/` may appear");
        }
        if text.split('/').any(|part| part.is_empty() || part.starts_with('.'))
            || text.contains("..")
            || text.starts_with('-')
        {
            return fail("it is not a well-formed ref name");
        }
        Ok(Revision(text.into()))
    }
}

/// A git commit id: 40 hex digits, kept lowercase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CommitId([u8; 20]);

impl fmt::Display for CommitId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl FromStr for CommitId {
    type Err = ();

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        parse_hex(text).map(CommitId).ok_or(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revisions_accept_ref_names_and_refuse_what_could_bend_a_url() {
        for good in ["main", "v1.0", "refs/pr/1", "release-2024_10", "a+b", "0123456789abcdef0123456789abcdef01234567"]
        {
            assert_eq!(good.parse::<Revision>().unwrap().as_str(), good);
        }
        for bad in [
            "", "../main", "a/../b", "/main", "main/", "a//b", "a b", "a?b", "a#b", "a%2Fb", "-x", ".hidden", "a\\b",
            "x\u{1b}",
        ] {
            assert!(bad.parse::<Revision>().is_err(), "{bad:?}");
        }
        assert_eq!("refs/pr/1".parse::<Revision>().unwrap().url_segment(), "refs%2Fpr%2F1");
        assert_eq!("x".repeat(201).parse::<Revision>().unwrap_err().reason, "it is longer than 200 characters");
    }

    #[test]
    fn commit_ids_are_forty_hex_digits_kept_lowercase() {
        let id: CommitId = "ABCDEF0123456789ABCDEF0123456789ABCDEF01".parse().unwrap();
        assert_eq!(id.to_string(), "abcdef0123456789abcdef0123456789abcdef01");
        assert!("../../../../x".parse::<CommitId>().is_err());
        assert!("abcdef".parse::<CommitId>().is_err());
        let revision: Revision = "abcdef0123456789abcdef0123456789abcdef01".parse().unwrap();
        assert_eq!(revision.as_commit(), Some(id));
        assert_eq!(Revision::main().as_commit(), None);
    }
}
