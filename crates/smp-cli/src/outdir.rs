//! Output directories that never end up half-written.
//!
//! Everything is written into a sibling staging directory; only when the whole run
//! succeeded is it swapped into place. A failed run removes its staging directory and
//! leaves an earlier complete output untouched.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

pub struct StagedDir {
    final_dir: PathBuf,
    staging: PathBuf,
    committed: bool,
}

impl StagedDir {
    pub fn new(final_dir: &Path) -> io::Result<Self> {
        let name = final_dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "out".into());
        let parent = match final_dir.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        fs::create_dir_all(&parent)?;
        let staging = parent.join(format!(".{name}.partial-{}", std::process::id()));
        if staging.exists() {
            fs::remove_dir_all(&staging)?;
        }
        fs::create_dir_all(&staging)?;
        Ok(StagedDir { final_dir: final_dir.to_path_buf(), staging, committed: false })
    }

    /// Where to write a file now.
    pub fn path(&self, file: &str) -> PathBuf {
        self.staging.join(file)
    }

    /// Where the file will be once committed.
    pub fn final_path(&self, file: &str) -> PathBuf {
        self.final_dir.join(file)
    }

    /// Swaps the staging directory into place, replacing an earlier output.
    pub fn commit(mut self) -> io::Result<PathBuf> {
        let old = self.staging.with_extension("old");
        if self.final_dir.exists() {
            if old.exists() {
                fs::remove_dir_all(&old)?;
            }
            fs::rename(&self.final_dir, &old)?;
        }
        fs::rename(&self.staging, &self.final_dir)?;
        if old.exists() {
            fs::remove_dir_all(&old)?;
        }
        self.committed = true;
        Ok(self.final_dir.clone())
    }
}

impl Drop for StagedDir {
    fn drop(&mut self) {
        if !self.committed {
            let _ = fs::remove_dir_all(&self.staging);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_run_leaves_previous_output() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("demo");
        let a = StagedDir::new(&out).unwrap();
        fs::write(a.path("x.txt"), "first").unwrap();
        a.commit().unwrap();
        {
            let b = StagedDir::new(&out).unwrap();
            fs::write(b.path("x.txt"), "second, half done").unwrap();
            // dropped without commit: a failure
        }
        assert_eq!(fs::read_to_string(out.join("x.txt")).unwrap(), "first");
        let leftovers: Vec<_> = fs::read_dir(tmp.path()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "staging directory removed");
        let c = StagedDir::new(&out).unwrap();
        fs::write(c.path("x.txt"), "third").unwrap();
        c.commit().unwrap();
        assert_eq!(fs::read_to_string(out.join("x.txt")).unwrap(), "third");
    }
}
