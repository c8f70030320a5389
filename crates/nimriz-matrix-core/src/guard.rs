//! Outputs never clobber inputs or records: before a command writes a file the person named
//! with a flag (`-o`, `--manifest`, ...), it checks that the file is not the spec, one of
//! the spec's input files, or a manifest's own files (the manifest, its journal and lock).
//!
//! Paths are compared resolved: an existing file by `canonicalize` (symlinks, `..`, `./`),
//! a file not written yet by its resolved folder plus its name; on Unix an existing file is
//! also compared by device and inode, so a hard link to the spec is caught too.

use crate::{Error, Result};
use std::path::{Path, PathBuf};

/// A file an output must not replace, and what it is (for the message).
#[derive(Debug, Clone)]
pub struct Protected {
    pub path: PathBuf,
    /// e.g. "the spec", "the spec's input file", "the manifest's journal".
    pub what: String,
}

impl Protected {
    pub fn new(path: impl Into<PathBuf>, what: impl Into<String>) -> Self {
        Protected {
            path: path.into(),
            what: what.into(),
        }
    }
}

/// The spec and the input files it loaded (`inputs` as recorded: relative to the spec's
/// folder, or absolute).
pub fn spec_files(spec: &Path, inputs: &[crate::model::InputFile]) -> Vec<Protected> {
    let dir = spec.parent().unwrap_or(Path::new(""));
    let mut out = vec![Protected::new(spec, "the spec")];
    out.extend(
        inputs
            .iter()
            .map(|i| Protected::new(dir.join(&i.path), "one of the spec's input files")),
    );
    out
}

/// Refuse (exit 2) an output `target`, given with `flag`, that is one of `protected`.
/// `-` (stdout) is never a file.
pub fn refuse_protected(flag: &str, target: &Path, protected: &[Protected]) -> Result<()> {
    if target == Path::new("-") {
        return Ok(());
    }
    let Some(out) = resolve(target) else {
        // Its folder does not exist: nothing there can be replaced (the write will fail
        // with an I/O error naming the folder).
        return Ok(());
    };
    for p in protected {
        if resolve(&p.path).is_some_and(|own| own == out) || same_file(target, &p.path) {
            return Err(Error::Usage(format!(
                "{flag} {} is {} ({}): writing there would replace it; choose another file",
                target.display(),
                p.what,
                p.path.display()
            )));
        }
    }
    Ok(())
}

/// The resolved path: the file's own when it exists, else its resolved folder + its name.
fn resolve(p: &Path) -> Option<PathBuf> {
    if let Ok(c) = std::fs::canonicalize(p) {
        return Some(c);
    }
    let name = p.file_name()?;
    let dir = p.parent().filter(|d| !d.as_os_str().is_empty());
    let dir = std::fs::canonicalize(dir.unwrap_or(Path::new("."))).ok()?;
    Some(dir.join(name))
}

#[cfg(unix)]
fn same_file(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

#[cfg(not(unix))]
fn same_file(_: &Path, _: &Path) -> bool {
    false
}

/// `path` exists and is a device, FIFO or socket (`/dev/null`, `/dev/stdout`, a named pipe):
/// something to write into, never a file to replace. (Renaming a temp file over
/// `/dev/null`, as root, would turn it into a plain file for every program on the machine.)
pub fn is_stream(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| !m.is_file() && !m.is_dir())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_the_same_file_by_any_spelling_and_allows_others() {
        let dir = tempfile::tempdir().unwrap();
        let spec = dir.path().join("spec.toml");
        std::fs::write(&spec, "x").unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        let manifest = dir.path().join("spec.manifest.json");
        let mut protected = spec_files(&spec, &[]);
        for (suffix, what) in [
            ("", "the manifest"),
            (".journal", "its journal"),
            (".lock", "its lock"),
        ] {
            protected.push(Protected::new(
                format!("{}{suffix}", manifest.display()),
                what,
            ));
        }
        for bad in [
            spec.clone(),
            dir.path().join("sub/../spec.toml"),
            dir.path().join("./spec.manifest.json"),
            dir.path().join("spec.manifest.json.journal"),
            dir.path().join("spec.manifest.json.lock"),
        ] {
            let e = refuse_protected("-o", &bad, &protected).unwrap_err();
            assert_eq!(e.exit_code(), crate::exit::INVALID, "{bad:?}");
        }
        for ok in [
            dir.path().join("plan.csv"),
            dir.path().join("sub/spec.toml"),
            dir.path().join("missing/spec.toml"),
            PathBuf::from("-"),
        ] {
            refuse_protected("-o", &ok, &protected).unwrap();
        }
    }

    #[cfg(unix)]
    #[test]
    fn refuses_a_symlink_or_hard_link_to_the_spec() {
        let dir = tempfile::tempdir().unwrap();
        let spec = dir.path().join("spec.toml");
        std::fs::write(&spec, "x").unwrap();
        let soft = dir.path().join("soft.csv");
        std::os::unix::fs::symlink(&spec, &soft).unwrap();
        let hard = dir.path().join("hard.csv");
        std::fs::hard_link(&spec, &hard).unwrap();
        let protected = spec_files(&spec, &[]);
        let e = refuse_protected("-o", &soft, &protected).unwrap_err();
        assert!(e.to_string().contains("is the spec"), "{e}");
        refuse_protected("-o", &hard, &protected).unwrap_err();
    }
}
