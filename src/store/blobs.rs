//! Content addressing: the `sha256` digest and git blob id newtypes, and
//! hashing of files.

use std::fmt;
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::Path;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest as _, Sha256};

/// A sha256 digest, always 64 lowercase hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Digest([u8; 32]);

impl Digest {
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

/// Hashes a file, returning its digest and length.
pub fn hash_file(path: &Path) -> io::Result<(Digest, u64)> {
    copy_hashing(&mut File::open(path)?, &mut io::sink())
}

/// A git blob id (SHA-1 of `blob <len>\0` and the bytes), always 40
/// lowercase hex digits. The hub lists it (`blobId`) for every file; for
/// files outside LFS it is the only checksum there is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct GitBlobId([u8; 20]);

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
pub(crate) fn parse_hex<const N: usize>(text: &str) -> Option<[u8; N]> {
    if text.len() != 2 * N || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut out = [0u8; N];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

/// The git blob id of a file's bytes.
pub fn git_blob_id(path: &Path) -> io::Result<GitBlobId> {
    use sha1::Digest as _;
    let mut file = File::open(path)?;
    let len = file.metadata()?.len();
    let mut hasher = sha1::Sha1::new();
    hasher.update(format!("blob {len}\0").as_bytes());
    io::copy(&mut file, &mut hasher)?;
    Ok(GitBlobId(hasher.finalize().into()))
}

/// Copies `from` into `to` while hashing what passes through.
pub fn copy_hashing(from: &mut impl Read, to: &mut impl Write) -> io::Result<(Digest, u64)> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hasher.update(&buf[..n]);
        to.write_all(&buf[..n])?;
        total += n as u64;
    }
    Ok((Digest(hasher.finalize().into()), total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn git_blob_ids_match_git_hash_object() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"hello\n").unwrap();
        // `printf 'hello\n' | git hash-object --stdin`
        assert_eq!(git_blob_id(&path).unwrap().to_string(), "ce013625030ba8dba906f756967f9e9ca394464a");
        assert_eq!(
            "CE013625030BA8DBA906F756967F9E9CA394464A".parse::<GitBlobId>().unwrap().to_string(),
            "ce013625030ba8dba906f756967f9e9ca394464a"
        );
        for bad in ["../x", "ce01362503", "ce013625030ba8dba906f756967f9e9ca394464ag"] {
            assert!(bad.parse::<GitBlobId>().is_err(), "{bad}");
        }
    }

    #[test]
    fn digest_round_trips_and_matches_a_known_vector() {
        let d = Digest::of_bytes(b"abc");
        assert_eq!(d.hex(), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        assert_eq!(d.hex().parse::<Digest>(), Ok(d));
        assert!("../etc".parse::<Digest>().is_err());
        assert!("BA7816BF".parse::<Digest>().is_err());
    }
}
