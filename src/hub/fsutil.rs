//! Small file-system helpers the downloader needs (atomic writes use the
//! crate-wide `atomic` module).
use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::Path;

/// The directory holding `path` (`.` for a bare file name).
pub(crate) fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Makes a rename or create in `dir` durable.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Bytes available to an unprivileged user on the file system holding `dir`.
pub(crate) fn free_space(dir: &Path) -> io::Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains NUL"))?;
    // SAFETY: `c` is a valid NUL-terminated string and `st` is a plain C struct
    // that statvfs fills; it is only read after a successful call.
    unsafe {
        let mut st: libc::statvfs = std::mem::zeroed();
        if libc::statvfs(c.as_ptr(), &mut st) != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok((st.f_bavail as u64).saturating_mul(st.f_frsize as u64))
    }
}

/// Reserves `len` bytes for `file` so that a full disk fails now, not midway.
/// File systems without `fallocate` fall back to a sparse `set_len`.
pub(crate) fn reserve(file: &File, len: u64) -> io::Result<()> {
    use std::os::unix::io::AsRawFd;
    #[cfg(target_os = "linux")]
    {
        let Ok(off_len) = libc::off_t::try_from(len) else {
            return file.set_len(len);
        };
        // SAFETY: the descriptor is valid for the lifetime of `file`; mode 0
        // only allocates blocks and extends the size, never discards data.
        let rc = unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, off_len) };
        if rc == 0 {
            return Ok(());
        }
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::EOPNOTSUPP) | Some(libc::ENOSYS) | Some(libc::EINVAL) => {}
            _ => return Err(err),
        }
    }
    let _ = file.as_raw_fd();
    if file.metadata()?.len() != len {
        file.set_len(len)?;
    }
    Ok(())
}

/// Modification time in nanoseconds since the epoch (the cheap "unchanged"
/// check of a verified file).
pub(crate) fn mtime_ns(meta: &fs::Metadata) -> i128 {
    use std::os::unix::fs::MetadataExt;
    i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec())
}

/// Opens (creating if needed) a file for positional reads and writes.
pub(crate) fn open_rw(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
}
