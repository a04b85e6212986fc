//! A pseudo-terminal to run the real binary on (so it sees a terminal on
//! stdout and stderr), and a tiny terminal model that replays what it wrote
//! into the screen a person would see.

use std::ffi::CStr;
use std::fs::File;
use std::io::Read;
use std::os::fd::{FromRawFd, OwnedFd};
use std::process::{Command, Stdio};

/// Runs `cmd` with stdin empty and stdout and stderr on one pseudo-terminal
/// `cols` wide; returns its exit code and every byte it wrote there.
pub fn run_on_pty(mut cmd: Command, cols: u16) -> (i32, Vec<u8>) {
    // SAFETY: plain libc calls on descriptors this function owns; each
    // result is checked before use.
    let (master, slave) = unsafe {
        let m = libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC);
        assert!(m >= 0, "posix_openpt: {}", std::io::Error::last_os_error());
        assert_eq!(libc::grantpt(m), 0, "grantpt");
        assert_eq!(libc::unlockpt(m), 0, "unlockpt");
        let mut name = [0 as libc::c_char; 128];
        assert_eq!(libc::ptsname_r(m, name.as_mut_ptr(), name.len()), 0);
        let s = libc::open(
            CStr::from_ptr(name.as_ptr()).as_ptr(),
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        );
        assert!(
            s >= 0,
            "open pty slave: {}",
            std::io::Error::last_os_error()
        );
        let ws = libc::winsize {
            ws_row: 50,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        assert_eq!(libc::ioctl(m, libc::TIOCSWINSZ, &ws), 0, "TIOCSWINSZ");
        (File::from_raw_fd(m), OwnedFd::from_raw_fd(s))
    };
    let out = slave.try_clone().expect("dup slave");
    cmd.stdin(Stdio::null())
        .stdout(Stdio::from(out))
        .stderr(Stdio::from(slave))
        .env("TERM", "xterm");
    let mut child = cmd.spawn().expect("spawn on the pty");
    // The Command kept the slave descriptors; they close with it, so the
    // master reads EIO once the child (the last holder) exits.
    drop(cmd);
    let reader = std::thread::spawn(move || {
        let mut master = master;
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            match master.read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        buf
    });
    let status = child.wait().expect("wait");
    let bytes = reader.join().expect("pty reader");
    (status.code().unwrap_or(-1), bytes)
}

/// The screen after replaying `bytes`: `\r`, `\n`, printable characters
/// (wide ones taking two columns, wrapping at `cols`, as a terminal does), `ESC[2K` (erase line),
/// `ESC[nA`/`B`/`C`/`D` (cursor up, down, right, left); other escape
/// sequences are ignored. A bar wider
/// than the terminal would wrap and leave its first part behind when it is
/// erased: the garbage a person would see.
pub fn screen(bytes: &[u8], cols: usize) -> Vec<String> {
    let text = String::from_utf8_lossy(bytes);
    let mut lines: Vec<Vec<char>> = vec![Vec::new()];
    let (mut row, mut col) = (0usize, 0usize);
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\r' => col = 0,
            '\n' => {
                row += 1;
                col = 0;
                if lines.len() <= row {
                    lines.push(Vec::new());
                }
            }
            '\x1b' => {
                if chars.peek() != Some(&'[') {
                    continue;
                }
                chars.next();
                let mut params = String::new();
                let mut fin = ' ';
                for c in chars.by_ref() {
                    if c.is_ascii_alphabetic() {
                        fin = c;
                        break;
                    }
                    params.push(c);
                }
                match (fin, params.as_str()) {
                    ('K', "2") => lines[row].clear(),
                    ('A', p) => {
                        let n: usize = p.parse().unwrap_or(1);
                        row = row.saturating_sub(n);
                    }
                    ('B', p) => {
                        row += p.parse::<usize>().unwrap_or(1);
                        while lines.len() <= row {
                            lines.push(Vec::new());
                        }
                    }
                    ('C', p) => col = (col + p.parse::<usize>().unwrap_or(1)).min(cols),
                    ('D', p) => col = col.saturating_sub(p.parse().unwrap_or(1)),
                    _ => {}
                }
            }
            c if !c.is_control() => {
                let width = unicode_width::UnicodeWidthChar::width(c).unwrap_or(1);
                if col + width > cols {
                    row += 1;
                    col = 0;
                    if lines.len() <= row {
                        lines.push(Vec::new());
                    }
                }
                let line = &mut lines[row];
                if line.len() <= col {
                    line.resize(col + 1, ' ');
                }
                line[col] = c;
                // The second column of a wide character holds nothing.
                for _ in 1..width {
                    col += 1;
                    if line.len() <= col {
                        line.push('\u{0}');
                    } else {
                        line[col] = '\u{0}';
                    }
                }
                col += 1;
            }
            _ => {}
        }
    }
    lines
        .into_iter()
        .map(|l| {
            l.into_iter()
                .filter(|c| *c != '\u{0}')
                .collect::<String>()
                .trim_end()
                .to_string()
        })
        .collect()
}
