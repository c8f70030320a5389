//! Reading the files a spec names, defensively: a spec may come from a pull request, so
//! what it can make us read is limited by the person running the command, never by the
//! spec itself.
//!
//! - `from` files resolve inside the spec's folder tree (after symlinks); a path outside is
//!   refused without opening it, unless the runner passes `--allow-outside-inputs` (or sets
//!   `NIMRIZ_MATRIX_ALLOW_OUTSIDE_INPUTS=1`).
//! - Only regular files are read: a FIFO would block forever, `/dev/zero` never ends, a
//!   folder is a mistake. This is checked from metadata, before opening.
//! - Each file is at most `max_bytes` (default 256 MiB): checked from metadata, and again
//!   while reading (a file that grows, or reports no size, is cut off and refused).

use std::io::Read;
use std::path::{Component, Path, PathBuf};

/// 256 MiB: far above any real campaign CSV, far below what would exhaust memory.
pub const DEFAULT_MAX_INPUT_BYTES: u64 = 256 << 20;

/// What the person running the command allows a spec to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InputPolicy {
    /// Read `from` files outside the spec's folder tree.
    pub allow_outside: bool,
    /// Refuse the spec or an input file larger than this many bytes.
    pub max_bytes: u64,
    /// `--encoding`: the encoding of a CSV given as the spec, and of the CSV files a spec
    /// names without an `encoding` field (`None`: UTF-8). A BOM always wins.
    pub encoding: Option<&'static encoding_rs::Encoding>,
}

impl Default for InputPolicy {
    fn default() -> Self {
        InputPolicy {
            allow_outside: false,
            max_bytes: DEFAULT_MAX_INPUT_BYTES,
            encoding: None,
        }
    }
}

/// Why a file was not read.
#[derive(Debug)]
pub(super) enum InputError {
    Io(std::io::Error),
    /// A FIFO, device, socket or folder ("a FIFO (named pipe)" ...).
    NotRegular(&'static str),
    /// Over the limit: its size when the metadata tells (`None`: found while reading).
    TooBig {
        size: Option<u64>,
        limit: u64,
    },
    /// Outside the spec's folder: (the folder, what the path resolves to).
    Outside {
        root: PathBuf,
        resolved: PathBuf,
    },
}

impl InputError {
    /// `(reason, help)` for a file described as `what` (e.g. "CSV file `brands.csv`").
    pub(super) fn describe(&self, what: &str) -> (String, String) {
        match self {
            InputError::Io(e) => (
                format!("cannot read {what}: {}", super::csv_input::io_reason(e)),
                "the path is relative to the spec file's folder; check the name".into(),
            ),
            InputError::NotRegular(kind) => (
                format!("{what} is not a regular file (it is {kind})"),
                "name a regular file: pipes, devices and folders are refused (reading a pipe or a device could wait or grow forever)".into(),
            ),
            InputError::TooBig { size, limit } => (
                match size {
                    Some(size) => format!("{what} is larger than the input limit ({size} bytes, limit {limit})"),
                    None => format!("{what} is larger than the input limit (more than {limit} bytes read, limit {limit})"),
                },
                "split the file, or raise the limit with --max-input-bytes BYTES".into(),
            ),
            InputError::Outside { root, resolved } => (
                format!(
                    "{what} is outside the spec's folder {} (it resolves to {}), so it was not read",
                    root.display(),
                    resolved.display()
                ),
                "keep input files in the spec's folder or below it (a spec from someone else could otherwise read any file on this machine); if you trust this spec, run with --allow-outside-inputs or NIMRIZ_MATRIX_ALLOW_OUTSIDE_INPUTS=1".into(),
            ),
        }
    }
}

impl From<std::io::Error> for InputError {
    fn from(e: std::io::Error) -> Self {
        InputError::Io(e)
    }
}

/// Check that `path` (a `from` file joined to the spec's folder `spec_dir`) resolves inside
/// that folder, without opening it.
pub(super) fn confine(
    spec_dir: &Path,
    path: &Path,
    policy: &InputPolicy,
) -> Result<(), InputError> {
    if policy.allow_outside {
        return Ok(());
    }
    let dir = if spec_dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        spec_dir
    };
    let root = std::fs::canonicalize(dir)?;
    let resolved = match std::fs::canonicalize(path) {
        Ok(r) => r,
        // Not there (or not reachable): judge the path as written, so a missing file
        // outside is still "outside", and a missing file inside is "no such file".
        Err(e) => {
            let lexical = lexical(&root.join(path.strip_prefix(dir).unwrap_or(path)));
            if lexical.starts_with(&root) {
                return Err(e.into());
            }
            lexical
        }
    };
    if resolved.starts_with(&root) {
        Ok(())
    } else {
        Err(InputError::Outside { root, resolved })
    }
}

/// `a/b/../c` → `a/c`, without touching the file system.
fn lexical(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// Read a whole file the spec names (or the spec itself) within the policy's limits.
pub(super) fn read(path: &Path, policy: &InputPolicy) -> Result<Vec<u8>, InputError> {
    let meta = std::fs::metadata(path)?;
    regular(&meta)?;
    let limit = policy.max_bytes;
    if meta.len() > limit {
        return Err(InputError::TooBig {
            size: Some(meta.len()),
            limit,
        });
    }
    let file = std::fs::File::open(path)?;
    // Swapped for something else between the check and the open: check what was opened.
    regular(&file.metadata()?)?;
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    file.take(limit.saturating_add(1)).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(InputError::TooBig { size: None, limit });
    }
    Ok(bytes)
}

fn regular(meta: &std::fs::Metadata) -> Result<(), InputError> {
    if meta.is_file() {
        return Ok(());
    }
    if meta.is_dir() {
        return Err(InputError::NotRegular("a folder"));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        let t = meta.file_type();
        if t.is_fifo() {
            return Err(InputError::NotRegular("a FIFO (named pipe)"));
        }
        if t.is_char_device() || t.is_block_device() {
            return Err(InputError::NotRegular("a device"));
        }
        if t.is_socket() {
            return Err(InputError::NotRegular("a socket"));
        }
    }
    Err(InputError::NotRegular("not a regular file"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confine_allows_inside_and_refuses_outside() {
        let root = tempfile::tempdir().unwrap();
        let spec_dir = root.path().join("project");
        std::fs::create_dir_all(spec_dir.join("data")).unwrap();
        std::fs::write(spec_dir.join("data/brands.csv"), "key\na\n").unwrap();
        std::fs::write(root.path().join("secret.txt"), "s3cret").unwrap();
        let p = InputPolicy::default();
        confine(&spec_dir, &spec_dir.join("data/brands.csv"), &p).unwrap();
        confine(&spec_dir, &spec_dir.join("data/../data/brands.csv"), &p).unwrap();
        // Missing inside: the I/O error (no such file), not "outside".
        assert!(matches!(
            confine(&spec_dir, &spec_dir.join("nope.csv"), &p),
            Err(InputError::Io(_))
        ));
        for outside in [
            spec_dir.join("../secret.txt"),
            spec_dir.join("../missing.txt"),
            root.path().join("secret.txt"),
            PathBuf::from("/etc/passwd"),
        ] {
            assert!(
                matches!(
                    confine(&spec_dir, &outside, &p),
                    Err(InputError::Outside { .. })
                ),
                "{outside:?}"
            );
        }
        let allow = InputPolicy {
            allow_outside: true,
            ..p
        };
        confine(&spec_dir, &spec_dir.join("../secret.txt"), &allow).unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn a_symlink_out_of_the_folder_is_outside() {
        let root = tempfile::tempdir().unwrap();
        let spec_dir = root.path().join("project");
        std::fs::create_dir(&spec_dir).unwrap();
        std::fs::write(root.path().join("secret.txt"), "s3cret").unwrap();
        std::os::unix::fs::symlink(root.path().join("secret.txt"), spec_dir.join("b.csv")).unwrap();
        let e = confine(&spec_dir, &spec_dir.join("b.csv"), &InputPolicy::default());
        assert!(matches!(e, Err(InputError::Outside { .. })), "{e:?}");
    }

    #[test]
    fn size_limit_from_metadata() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("big.csv");
        std::fs::write(&f, vec![b'a'; 100]).unwrap();
        let small = InputPolicy {
            max_bytes: 99,
            ..InputPolicy::default()
        };
        assert!(matches!(
            read(&f, &small),
            Err(InputError::TooBig {
                size: Some(100),
                limit: 99
            })
        ));
        let exact = InputPolicy {
            max_bytes: 100,
            ..InputPolicy::default()
        };
        assert_eq!(read(&f, &exact).unwrap().len(), 100);
    }

    /// `/proc` files are regular but report size 0: the cap holds while reading.
    #[cfg(target_os = "linux")]
    #[test]
    fn size_limit_while_reading_a_file_that_reports_no_size() {
        let p = Path::new("/proc/self/status");
        assert_eq!(std::fs::metadata(p).unwrap().len(), 0);
        let small = InputPolicy {
            max_bytes: 10,
            ..InputPolicy::default()
        };
        assert!(matches!(
            read(p, &small),
            Err(InputError::TooBig {
                size: None,
                limit: 10
            })
        ));
        assert!(read(p, &InputPolicy::default()).unwrap().len() > 10);
    }

    #[cfg(unix)]
    #[test]
    fn devices_and_folders_are_refused_before_opening() {
        let dir = tempfile::tempdir().unwrap();
        let p = InputPolicy::default();
        assert!(matches!(
            read(dir.path(), &p),
            Err(InputError::NotRegular("a folder"))
        ));
        assert!(matches!(
            read(Path::new("/dev/zero"), &p),
            Err(InputError::NotRegular("a device"))
        ));
    }
}
