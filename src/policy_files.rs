//! Reading policy files and their list files from disk.
//!
//! The one place that does file I/O for policies, kept out of the pure `policy` module. Sizes
//! are checked before reading (a 10 GB file is refused, not loaded), and bytes that are not
//! UTF-8 are reported at their line and column.

use std::fs;
use std::io;
use std::path::Path;

use crate::policy::diagnostic::Source;
use crate::policy::{Diagnostics, Policy, Severity, MAX_LIST_BYTES, MAX_POLICY_BYTES};

/// Loads and compiles the policy at `path`; every problem comes back as a diagnostic.
pub fn load(path: &Path) -> Result<Policy, Diagnostics> {
    load_tracked(path).0
}

/// [`load`], also returning every file it read or tried to read (the policy and its list
/// files), so a watcher knows what to watch even when the load failed.
pub fn load_tracked(path: &Path) -> (Result<Policy, Diagnostics>, Vec<std::path::PathBuf>) {
    let mut files = vec![path.to_path_buf()];
    let policy = load_inner(path, &mut files);
    (policy, files)
}

fn load_inner(path: &Path, files: &mut Vec<std::path::PathBuf>) -> Result<Policy, Diagnostics> {
    let name = path.display().to_string();
    let text = read_text(path, MAX_POLICY_BYTES).map_err(|e| {
        let src = Source {
            name: &name,
            text: "",
        };
        let mut d = src.diagnostic(Severity::Error, 0..0, e.message);
        if e.at.is_none() && !d.message.starts_with("file is") {
            d.message = format!("cannot read policy file: {}", d.message);
        }
        if let Some(at) = e.at {
            (d.line, d.col) = at;
        }
        Diagnostics(vec![d])
    })?;
    Policy::from_toml(&name, &text, &mut |list: &Path| {
        files.push(list.to_path_buf());
        read_text(list, MAX_LIST_BYTES).map_err(|e| io::Error::other(e.message))
    })
}

struct ReadError {
    message: String,
    /// Line and column of the problem, when it is inside the file.
    at: Option<(usize, usize)>,
}

fn read_text(path: &Path, limit: usize) -> Result<String, ReadError> {
    let plain = |message: String| ReadError { message, at: None };
    let meta = fs::metadata(path).map_err(|e| plain(e.to_string()))?;
    if !meta.is_file() {
        return Err(plain("not a regular file".to_string()));
    }
    if meta.len() > limit as u64 {
        return Err(plain(format!(
            "file is {} bytes; the limit is {limit} bytes",
            meta.len()
        )));
    }
    let bytes = fs::read(path).map_err(|e| plain(e.to_string()))?;
    if bytes.len() > limit {
        return Err(plain(format!("file is over the limit of {limit} bytes")));
    }
    String::from_utf8(bytes).map_err(|e| {
        let valid = e.utf8_error().valid_up_to();
        let bytes = e.into_bytes();
        let before = String::from_utf8_lossy(&bytes[..valid]).into_owned();
        let src = Source {
            name: "",
            text: &before,
        };
        ReadError {
            message: format!("file is not valid UTF-8 (byte {valid})"),
            at: Some(src.position(before.len())),
        }
    })
}
