//! The marker file beside the database: it says a store was created here, and up to which
//! record id the log was committed.
//!
//! sled recovers whatever prefix of its file is intact and says nothing about a lost tail; a
//! truncated file (or one emptied entirely) would open as a shorter, or brand new, store. The
//! marker is the independent witness: it is updated after each commit's flush (without an
//! fsync of its own, so it may lag the database but never lead it), and a database whose log
//! ends before the marker's mark has lost acknowledged records.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

const NAME: &str = "bridgewarden-audit";
const HEADER: &str = "bridgewarden audit store\nschema 1\ncommitted ";
const DIGITS: usize = 20;

pub(crate) struct Marker {
    file: File,
}

fn path(dir: &Path) -> PathBuf {
    dir.join(NAME)
}

impl Marker {
    /// The committed mark, if a store was created in `dir` (0 for a marker without one).
    pub fn read(dir: &Path) -> io::Result<Option<u64>> {
        match std::fs::read_to_string(path(dir)) {
            Ok(text) => Ok(Some(
                text.strip_prefix(HEADER)
                    .and_then(|rest| rest.trim().parse().ok())
                    .unwrap_or(0),
            )),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Opens the marker for updates, writing it whole with `committed`.
    pub fn write(dir: &Path, committed: u64) -> io::Result<Marker> {
        let file = File::options()
            .create(true)
            .write(true)
            .truncate(true)
            .open(path(dir))?;
        file.write_all_at(format!("{HEADER}{committed:0DIGITS$}\n").as_bytes(), 0)?;
        file.sync_all()?;
        Ok(Marker { file })
    }

    /// Moves the mark forward; called after a commit's flush.
    pub fn set(&self, committed: u64) -> io::Result<()> {
        self.file.write_all_at(
            format!("{committed:0DIGITS$}").as_bytes(),
            HEADER.len() as u64,
        )
    }
}
