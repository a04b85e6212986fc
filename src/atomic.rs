//! Crash-safe file writes: a reader (or a rerun after SIGKILL) sees either the
//! old bytes or the new bytes, never a half-written file.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Suffix of the temporary files this module creates; a crash can leave one
/// behind, and `sweep_temporaries` removes them on the next run.
pub const TEMP_SUFFIX: &str = ".onboard-tmp";

/// Writes `bytes` to `path` through a temporary file in the same directory,
/// fsyncs it, renames it over `path` and fsyncs the directory.
pub fn write(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let parent = parent_dir(path);
    fs::create_dir_all(&parent)?;
    remove_stale_temporaries(path);
    let tmp = temp_path(path);
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        drop(file);
        crate::crashpoint::point("atomic: temporary written");
        fs::rename(&tmp, path)?;
        crate::crashpoint::point("atomic: renamed");
        sync_dir(&parent)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Like [`write`], but leaves the file untouched (and its mtime unchanged)
/// when it already holds exactly `bytes`. Returns whether it wrote.
pub fn write_if_changed(path: &Path, bytes: &[u8]) -> io::Result<bool> {
    match fs::read(path) {
        Ok(existing) if existing == bytes => {
            remove_stale_temporaries(path);
            Ok(false)
        }
        _ => write(path, bytes).map(|()| true),
    }
}

/// Removes `path` and fsyncs its directory so the removal survives a crash.
pub fn remove(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Ok(()) => sync_dir(&parent_dir(path)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Deletes temporaries a killed process left in `dir` (not recursive).
pub fn sweep_temporaries(dir: &Path) -> io::Result<usize> {
    let mut removed = 0;
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        if entry.file_name().to_string_lossy().ends_with(TEMP_SUFFIX) {
            fs::remove_file(entry.path())?;
            removed += 1;
        }
    }
    Ok(removed)
}

fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

fn temp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "file".into());
    // The pid keeps two processes writing the same file from sharing a temp.
    parent_dir(path).join(format!(".{name}.{}{TEMP_SUFFIX}", std::process::id()))
}

/// Removes the temporaries of `path` that a killed process left behind: the
/// rerun that writes the file again is the one that knows they are garbage.
/// A temporary of a process still alive (another run mid-write) is kept.
fn remove_stale_temporaries(path: &Path) {
    let Some(name) = path.file_name().map(|n| n.to_string_lossy().into_owned()) else {
        return;
    };
    let prefix = format!(".{name}.");
    let Ok(entries) = fs::read_dir(parent_dir(path)) else {
        return;
    };
    for entry in entries.flatten() {
        let file = entry.file_name();
        let file = file.to_string_lossy();
        let Some(pid) = file
            .strip_prefix(&prefix)
            .and_then(|rest| rest.strip_suffix(TEMP_SUFFIX))
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if pid != std::process::id() && !process_alive(pid) {
            let _ = fs::remove_file(entry.path());
        }
    }
}

/// Whether process `pid` exists (of any user). Pid 0 is none: `kill(0, …)`
/// would mean this process's group.
pub(crate) fn process_alive(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    if pid == 0 {
        return false;
    }
    // SAFETY: signal 0 only checks that the process exists.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_replaces_and_leaves_no_temporaries() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/state.json");
        write(&path, b"one").unwrap();
        write(&path, b"two").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        let names: Vec<_> = fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("state.json")]);
    }

    #[test]
    fn a_killed_writers_temporary_goes_with_the_next_write_of_that_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("models.conf");
        // pid 0x7fff_fff0 does not exist; our own is alive.
        let dead = dir
            .path()
            .join(format!(".models.conf.{}{TEMP_SUFFIX}", 0x7fff_fff0u32));
        let alive = dir.path().join(format!(".models.conf.1{TEMP_SUFFIX}"));
        let other = dir
            .path()
            .join(format!(".other.{}{TEMP_SUFFIX}", 0x7fff_fff0u32));
        for p in [&dead, &alive, &other] {
            fs::write(p, b"half").unwrap();
        }
        fs::write(&path, b"same").unwrap();
        assert!(!write_if_changed(&path, b"same").unwrap());
        assert!(!dead.exists(), "a dead writer's temporary is removed");
        assert!(alive.exists(), "pid 1 is alive: its temporary stays");
        assert!(
            other.exists(),
            "another file's temporary is not ours to judge"
        );
    }

    #[test]
    fn write_if_changed_keeps_identical_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a");
        assert!(write_if_changed(&path, b"x").unwrap());
        assert!(!write_if_changed(&path, b"x").unwrap());
        assert!(write_if_changed(&path, b"y").unwrap());
    }

    #[test]
    fn sweep_removes_leftover_temporaries() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(format!(".a.1{TEMP_SUFFIX}")), b"partial").unwrap();
        fs::write(dir.path().join("keep"), b"k").unwrap();
        assert_eq!(sweep_temporaries(dir.path()).unwrap(), 1);
        assert!(dir.path().join("keep").exists());
    }
}
