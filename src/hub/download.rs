//! One file body from the hub into a partial file that the caller names:
//! resumed with `Range` from the bytes already there, never longer than the
//! listed size, restarted from zero when the server ignores the range.
//! Nothing the server sends (headers included) decides where bytes go.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::time::Duration;

use super::errors::{Context, HubError};
use super::progress::DownloadProgress;

const CHUNK: usize = 1 << 20;

/// Fills `part` up to `size` bytes from `request`'s answer. On success the
/// file holds `size` bytes (still to be verified by the caller). A failure
/// that can resume leaves the bytes received; one that cannot (the server
/// sent more than `size`, or a range it was not asked for) deletes the file.
pub(super) fn fill(
    request: ureq::Request,
    ctx: &Context<'_>,
    part: &Path,
    size: u64,
    stall_after: Duration,
    progress: &mut dyn DownloadProgress,
) -> Result<(), HubError> {
    let mut file = open_part(part)?;
    let io_error = |source| HubError::Io { path: part.to_path_buf(), source };
    let mut offset = file.metadata().map_err(io_error)?.len();
    if offset > size {
        // More than the file can be: never completable, start over.
        file.set_len(0).map_err(io_error)?;
        offset = 0;
    }
    if offset == size {
        progress.restart(size, size);
        progress.finish();
        return Ok(());
    }
    let request = if offset > 0 { request.set("Range", &format!("bytes={offset}-")) } else { request };
    let response = request.call().map_err(|e| ctx.error(e, stall_after))?;
    match response.status() {
        206 => check_content_range(response.header("content-range"), offset, size).map_err(|detail| {
            let _ = fs::remove_file(part);
            HubError::BadRange { what: ctx.what(), detail }
        })?,
        // A server that ignores `Range` sends the whole file: take it from byte 0.
        200 if offset > 0 => {
            file.set_len(0).map_err(io_error)?;
            offset = 0;
        }
        200 => {}
        status => return Err(ctx.status_error(status, &response)),
    }
    file.seek(SeekFrom::Start(offset)).map_err(io_error)?;
    progress.restart(size, offset);
    let mut body = response.into_reader();
    let received = copy_bounded(&mut body, &mut file, size - offset, progress).map_err(|failure| match failure {
        Failure::Read(e) => ctx.read_error(e, stall_after),
        Failure::Write(e) if e.kind() == io::ErrorKind::StorageFull => {
            HubError::DiskFull { what: ctx.what(), dir: part.parent().unwrap_or(part).to_path_buf() }
        }
        Failure::Write(e) => io_error(e),
        Failure::TooLong => {
            let _ = fs::remove_file(part);
            HubError::Overlong { what: ctx.what(), size }
        }
    })?;
    if offset + received < size {
        return Err(HubError::Download {
            what: ctx.what(),
            detail: format!("the connection closed after {} of {size} bytes", offset + received),
        });
    }
    progress.finish();
    Ok(())
}

/// Opens (creating) the partial file, replacing whatever unusable thing
/// sits at its name (a directory, an unreadable file).
fn open_part(part: &Path) -> Result<File, HubError> {
    let open = || OpenOptions::new().read(true).write(true).create(true).truncate(false).open(part);
    let file = match open() {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::StorageFull => {
            return Err(HubError::Io { path: part.to_path_buf(), source: e });
        }
        Err(_) => {
            let _ = fs::remove_dir_all(part).or_else(|_| fs::remove_file(part));
            open().map_err(|source| HubError::Io { path: part.to_path_buf(), source })?
        }
    };
    Ok(file)
}

/// `bytes {offset}-{size-1}/{size}`, as a 206 to `Range: bytes={offset}-` must say.
fn check_content_range(header: Option<&str>, offset: u64, size: u64) -> Result<(), String> {
    let expected = format!("bytes {offset}-{}/{size}", size - 1);
    match header {
        Some(value) if value.trim() == expected => Ok(()),
        Some(value) => Err(format!("asked from byte {offset}, got `{}`", value.escape_debug())),
        None => Err(format!("asked from byte {offset}, got no `Content-Range`")),
    }
}

enum Failure {
    Read(io::Error),
    Write(io::Error),
    /// The body went on past the bytes wanted.
    TooLong,
}

/// Copies at most `limit` bytes; a body with more is `TooLong` (after the
/// `limit` bytes were written). Returns the bytes copied.
fn copy_bounded(
    body: &mut impl Read,
    file: &mut File,
    limit: u64,
    progress: &mut dyn DownloadProgress,
) -> Result<u64, Failure> {
    let mut buf = vec![0u8; CHUNK];
    let mut copied = 0u64;
    loop {
        let n = match body.read(&mut buf) {
            Ok(0) => return Ok(copied),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Failure::Read(e)),
        };
        let room = usize::try_from(limit - copied).unwrap_or(usize::MAX);
        file.write_all(&buf[..n.min(room)]).map_err(Failure::Write)?;
        copied += n.min(room) as u64;
        progress.advance(n.min(room) as u64);
        if n > room {
            return Err(Failure::TooLong);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Quiet;
    impl DownloadProgress for Quiet {
        fn restart(&mut self, _: u64, _: u64) {}
        fn advance(&mut self, _: u64) {}
        fn finish(&mut self) {}
    }

    #[test]
    fn a_body_longer_than_the_limit_stops_at_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let mut file = File::create(dir.path().join("p")).unwrap();
        let mut body: &[u8] = &[7u8; 3000];
        assert!(matches!(copy_bounded(&mut body, &mut file, 1000, &mut Quiet), Err(Failure::TooLong)));
        assert_eq!(file.metadata().unwrap().len(), 1000);
        let mut exact: &[u8] = &[7u8; 1000];
        let mut file = File::create(dir.path().join("q")).unwrap();
        assert_eq!(copy_bounded(&mut exact, &mut file, 1000, &mut Quiet).ok(), Some(1000));
    }

    #[test]
    fn a_partial_answer_must_start_where_it_was_asked() {
        assert_eq!(check_content_range(Some("bytes 10-99/100"), 10, 100), Ok(()));
        assert_eq!(
            check_content_range(Some("bytes 0-99/100"), 10, 100),
            Err("asked from byte 10, got `bytes 0-99/100`".into())
        );
        assert!(check_content_range(Some("bytes 10-99/101"), 10, 100).is_err());
        assert!(check_content_range(None, 10, 100).is_err());
    }
}
