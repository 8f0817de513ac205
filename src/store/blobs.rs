//! Content addressing: hashing files into the ids of `crate::ids` (sha256
//! digests, git blob ids).

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::Path;

use sha2::{Digest as _, Sha256};

pub use crate::ids::{Digest, DigestError, GitBlobId, GitBlobIdError};

/// Hashes a file, returning its digest and length.
pub fn hash_file(path: &Path) -> io::Result<(Digest, u64)> {
    copy_hashing(&mut File::open(path)?, &mut io::sink())
}

/// The git blob id of a file's bytes.
pub fn git_blob_id(path: &Path) -> io::Result<GitBlobId> {
    use sha1::Digest as _;
    let mut file = File::open(path)?;
    let len = file.metadata()?.len();
    let mut hasher = sha1::Sha1::new();
    hasher.update(format!("blob {len}\0").as_bytes());
    io::copy(&mut file, &mut hasher)?;
    Ok(GitBlobId::from_bytes(hasher.finalize().into()))
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
    Ok((Digest::from_bytes(hasher.finalize().into()), total))
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
