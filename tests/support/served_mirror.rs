//! `onboard mirror serve` as a child process of the test, on a free
//! loopback port: the real binary, as a person or a script starts it.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Stdio};

use crate::Onboard;

/// Starts the mirror over `root` (with `extra` options) and waits for its
/// serving line; returns the child (stdout read, stderr as `stderr` says)
/// and the URL it serves at.
pub fn spawn(root: &Path, extra: &[&str], stderr: Stdio) -> (Child, String) {
    let mut child = Onboard::new()
        .args(["mirror", "serve"])
        .arg(root)
        .args(["--addr", "127.0.0.1:0"])
        .args(extra)
        .command()
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .expect("start onboard mirror serve");
    let mut first = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut first)
        .expect("read the serving line");
    let url = first
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap_or_else(|| panic!("no URL in {first:?}"))
        .to_string();
    (child, url)
}
