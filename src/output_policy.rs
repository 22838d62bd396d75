//! The one rule every command follows before it writes anything:
//!
//! * an output that is one of the command's inputs (the same file once paths are made absolute and
//!   symlinks resolved, or a hard link to it; for a folder output, one equal to or inside an input
//!   folder) is always refused, `--overwrite` or not;
//! * an output that already exists is refused unless `--overwrite` is given.
//!
//! Both checks run before any work, so a refused command writes nothing. The errors are one line:
//! `<path>: exists; pass --overwrite to replace it` and
//! `<path> is also an input (<which>); choose another output`.

use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};

use anyhow::{bail, Result};

/// A path made absolute with symlinks resolved, as far as it exists, plus the identity of the file
/// when it exists (so hard links and case-insensitive file systems compare equal too).
#[derive(Debug, Clone)]
struct Resolved {
    path: PathBuf,
    #[cfg(unix)]
    id: Option<(u64, u64)>,
}

impl Resolved {
    fn of(path: &Path) -> Self {
        let path = resolve(path);
        #[cfg(unix)]
        let id = {
            use std::os::unix::fs::MetadataExt;
            std::fs::metadata(&path).ok().map(|m| (m.dev(), m.ino()))
        };
        Self {
            path,
            #[cfg(unix)]
            id,
        }
    }

    fn same_as(&self, other: &Resolved) -> bool {
        #[cfg(unix)]
        if let (Some(a), Some(b)) = (self.id, other.id) {
            return a == b;
        }
        self.path == other.path
    }

    /// The file's identity when it exists (unix), else its resolved path: equal keys, same file.
    fn key(&self) -> Key {
        #[cfg(unix)]
        if let Some(id) = self.id {
            return Key::File(id);
        }
        Key::Path(self.path.clone())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    #[cfg(unix)]
    File((u64, u64)),
    Path(PathBuf),
}

/// `path` absolute, with its longest existing prefix canonicalised (symlinks resolved) and the rest
/// appended with `.` and `..` folded lexically.
fn resolve(path: &Path) -> PathBuf {
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let mut existing = absolute.as_path();
    let mut rest = Vec::new();
    loop {
        if let Ok(canonical) = std::fs::canonicalize(existing) {
            let mut out = canonical;
            for part in rest.iter().rev() {
                out.push(part);
            }
            return normalize(&out);
        }
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_os_string());
                existing = parent;
            }
            _ => return normalize(&absolute),
        }
    }
}

fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// Whether anything (a file, a folder, or a symlink, even a dangling one) is at `path`.
pub fn exists(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok()
}

/// Refuses an existing `path` unless `overwrite` is set.
pub fn refuse_existing(path: &Path, overwrite: bool) -> Result<()> {
    if exists(path) && !overwrite {
        bail!("{}: exists; pass --overwrite to replace it", path.display());
    }
    Ok(())
}

/// The inputs of one command run, and whether it may replace existing outputs.
#[derive(Debug, Default)]
pub struct OutputPolicy {
    overwrite: bool,
    /// Input files by identity and by resolved path (a folder may list thousands of images).
    files: HashMap<Key, String>,
    paths: HashMap<PathBuf, String>,
    folders: Vec<(Resolved, String)>,
}

impl OutputPolicy {
    pub fn new(overwrite: bool) -> Self {
        Self { overwrite, ..Self::default() }
    }

    /// A file the command reads; `which` names it for the user (e.g. `--annotations`).
    pub fn input(&mut self, path: &Path, which: impl Into<String>) -> &mut Self {
        let which = which.into();
        let resolved = Resolved::of(path);
        self.files.entry(resolved.key()).or_insert_with(|| which.clone());
        self.paths.entry(resolved.path).or_insert(which);
        self
    }

    /// A folder whose files the command reads: no output folder may be it or lie inside it.
    pub fn input_folder(&mut self, path: &Path, which: impl Into<String>) -> &mut Self {
        self.folders.push((Resolved::of(path), which.into()));
        self
    }

    /// The files a model argument stands for: the path given, and when it is a folder every file
    /// directly in it; for a checkpoint file, the `config.json` read beside it.
    pub fn model_input(&mut self, path: &Path, which: &str) -> &mut Self {
        self.input(path, which);
        if path.is_dir() {
            if let Ok(entries) = std::fs::read_dir(path) {
                let mut files: Vec<PathBuf> =
                    entries.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.is_file()).collect();
                files.sort();
                for file in files {
                    self.input(&file, which);
                }
            }
        } else {
            let config = path.with_file_name(crate::weights::checkpoint::CONFIG_FILE);
            if config.is_file() {
                self.input(&config, format!("{which} configuration"));
            }
        }
        self
    }

    /// The input `output` is, if any.
    fn input_named(&self, output: &Path) -> Option<&str> {
        let out = Resolved::of(output);
        self.files
            .get(&out.key())
            .or_else(|| self.paths.get(&out.path))
            .or_else(|| self.folders.iter().find(|(input, _)| input.same_as(&out)).map(|(_, which)| which))
            .map(String::as_str)
    }

    /// Refuses an output file that is an input (always) or that exists (without `--overwrite`).
    pub fn check_file(&self, output: &Path) -> Result<()> {
        self.check_not_input(output)?;
        refuse_existing(output, self.overwrite)
    }

    /// Refuses an output that is an input, whatever `--overwrite` says.
    pub fn check_not_input(&self, output: &Path) -> Result<()> {
        if let Some(which) = self.input_named(output) {
            bail!("{} is also an input ({which}); choose another output", output.display());
        }
        Ok(())
    }

    /// Refuses an output folder equal to or inside an input folder, then checks each file the
    /// command will write into it with [`OutputPolicy::check_file`].
    pub fn check_folder<'a>(&self, folder: &Path, files: impl IntoIterator<Item = &'a Path>) -> Result<()> {
        let out = Resolved::of(folder);
        for (input, which) in &self.folders {
            if input.same_as(&out) || out.path.starts_with(&input.path) {
                bail!("{} is also an input ({which}); choose another output", folder.display());
            }
        }
        self.check_not_input(folder)?;
        for file in files {
            self.check_file(file)?;
        }
        Ok(())
    }

    /// Refuses two outputs of one run that name the same file (the second would replace the first).
    pub fn check_distinct(&self, outputs: &[(&Path, &str)]) -> Result<()> {
        let mut seen: HashMap<Key, &str> = HashMap::new();
        for (path, which) in outputs {
            if let Some(first) = seen.insert(Resolved::of(path).key(), which) {
                bail!("{} would be written by both {first} and {which}; choose separate outputs", path.display());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symlinks_and_relative_paths_resolve_to_the_input() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("a.json");
        std::fs::write(&input, b"{}").unwrap();
        let mut policy = OutputPolicy::new(true);
        policy.input(&input, "--annotations");
        assert!(policy.check_file(&dir.path().join("sub/../a.json")).is_err());
        #[cfg(unix)]
        {
            let link = dir.path().join("link.json");
            std::os::unix::fs::symlink(&input, &link).unwrap();
            let err = policy.check_file(&link).unwrap_err().to_string();
            assert!(err.contains("is also an input (--annotations)"), "{err}");
            let hard = dir.path().join("hard.json");
            std::fs::hard_link(&input, &hard).unwrap();
            assert!(policy.check_file(&hard).is_err());
        }
        assert!(policy.check_file(&dir.path().join("b.json")).is_ok());
    }

    #[test]
    fn folders_inside_input_folders_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut policy = OutputPolicy::new(true);
        policy.input_folder(dir.path(), "--input folder");
        assert!(policy.check_folder(dir.path(), []).is_err());
        assert!(policy.check_folder(&dir.path().join("new/overlays"), []).is_err());
        let other = tempfile::tempdir().unwrap();
        assert!(policy.check_folder(other.path(), []).is_ok());
    }

    #[test]
    fn existing_outputs_need_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out.json");
        std::fs::write(&out, b"[]").unwrap();
        let err = OutputPolicy::new(false).check_file(&out).unwrap_err().to_string();
        assert!(err.ends_with(": exists; pass --overwrite to replace it"), "{err}");
        assert!(OutputPolicy::new(true).check_file(&out).is_ok());
    }
}
