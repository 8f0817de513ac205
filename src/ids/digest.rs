//! Content ids: sha256 digests and git blob ids, parsed from hex once and
//! printed as lowercase hex.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest as _, Sha256};

/// A sha256 digest, always 64 lowercase hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Digest([u8; 32]);

impl Digest {
    /// The digest whose bytes these are (from a finished hasher).
    pub fn from_bytes(bytes: [u8; 32]) -> Digest {
        Digest(bytes)
    }

    pub fn of_bytes(bytes: &[u8]) -> Digest {
        Digest(Sha256::digest(bytes).into())
    }

    pub fn hex(&self) -> String {
        self.to_string()
    }

    /// The blob's file name in the store.
    pub fn file_name(&self) -> String {
        format!("sha256-{self}")
    }

    /// The digest a blob file name (`sha256-<64 lowercase hex>`) stands for.
    pub fn from_file_name(name: &str) -> Option<Digest> {
        let hex = name.strip_prefix("sha256-")?;
        if hex.bytes().any(|b| b.is_ascii_uppercase()) {
            return None;
        }
        parse_hex(hex).map(Digest)
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid sha256 digest `{}`: expected 64 hex digits", .0.escape_debug())]
pub struct DigestError(pub String);

impl FromStr for Digest {
    type Err = DigestError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        parse_hex(text).map(Digest).ok_or_else(|| DigestError(text.into()))
    }
}

impl Serialize for Digest {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
    }
}

/// A git blob id (SHA-1 of `blob <len>\0` and the bytes), always 40
/// lowercase hex digits. The hub lists it (`blobId`) for every file; for
/// files outside LFS it is the only checksum there is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct GitBlobId([u8; 20]);

impl GitBlobId {
    /// The id whose bytes these are (from a finished hasher).
    pub fn from_bytes(bytes: [u8; 20]) -> GitBlobId {
        GitBlobId(bytes)
    }
}

impl fmt::Display for GitBlobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid git blob id `{}`: expected 40 hex digits", .0.escape_debug())]
pub struct GitBlobIdError(pub String);

impl FromStr for GitBlobId {
    type Err = GitBlobIdError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        parse_hex(text).map(GitBlobId).ok_or_else(|| GitBlobIdError(text.into()))
    }
}

/// `N` bytes from exactly `2N` hex digits (either case), or nothing.
pub fn parse_hex<const N: usize>(text: &str) -> Option<[u8; N]> {
    if text.len() != 2 * N || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut out = [0u8; N];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}
