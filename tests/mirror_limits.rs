//! `onboard mirror serve` under load and abuse, through the real binary on
//! 127.0.0.1: 200 clients at once, 20 clients that trickle their request
//! head, one that sends a 256 MiB header line, plus the caps one at a time
//! (503 when every connection is taken, 431, 408) and the bounded log.
//!
//! A client answered `503` retries after a backoff (capped by the
//! `Retry-After` it was given) and counts as well-behaved when it then gets
//! the right bytes; a reset, any other status or a wrong byte fails.

use onboard_test_support::served_mirror;
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, ChildStderr, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use onboard::hub::{MirrorLimits, MirrorServer};
use onboard_test_support::hub_fixture::{bytes, sha256_hex, write_repo};
use sha2::{Digest, Sha256};

const REPO: &str = "acme/load";
const FILE: &str = "w.bin";
/// Large enough that 200 downloads overlap (and some meet the cap).
const FILE_LEN: usize = 4 << 20;

/// The real binary serving `root` on a free loopback port; killed on drop.
struct Served {
    child: Child,
    addr: SocketAddr,
    stderr: Arc<Mutex<Vec<String>>>,
    reader: Option<thread::JoinHandle<()>>,
}

impl Served {
    fn start(root: &Path, extra: &[&str]) -> Served {
        let (mut child, url) = served_mirror::spawn(root, extra, Stdio::piped());
        let addr: SocketAddr = url["http://".len()..].parse().expect("address");
        assert!(addr.ip().is_loopback(), "{addr}");
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let lines = stderr.clone();
        let err: ChildStderr = child.stderr.take().expect("stderr");
        let reader = thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                lines.lock().unwrap().push(line);
            }
        });
        Served {
            child,
            addr,
            stderr,
            reader: Some(reader),
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Stops the server and returns its stderr lines.
    fn stop(mut self) -> Vec<String> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        std::mem::take(&mut *self.stderr.lock().unwrap())
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `VmRSS` or `VmHWM` of a process, in KiB.
fn proc_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Parses a whole `Connection: close` answer.
fn parse(raw: &[u8]) -> Result<Answer, String> {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| format!("no head in {} bytes", raw.len()))?;
    let head = String::from_utf8_lossy(&raw[..end]);
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or("no status")?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let answer = Answer {
        status,
        headers,
        body: raw[end + 4..].to_vec(),
    };
    let len: usize = answer
        .header("content-length")
        .and_then(|v| v.parse().ok())
        .ok_or("no Content-Length")?;
    if len != answer.body.len() {
        return Err(format!("body {} of {len} bytes", answer.body.len()));
    }
    Ok(answer)
}

/// One `GET` on a fresh connection, read to the end.
fn get(addr: SocketAddr, path: &str) -> Result<Answer, String> {
    let mut raw = Vec::new();
    request(addr, path)?
        .read_to_end(&mut raw)
        .map_err(|e| format!("read: {e}"))?;
    parse(&raw)
}

fn request(addr: SocketAddr, path: &str) -> Result<TcpStream, String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(30))
        .map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(30))).ok();
    s.set_write_timeout(Some(Duration::from_secs(30))).ok();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: load-test\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| format!("send: {e}"))?;
    Ok(s)
}

/// One `GET` whose body is hashed as it arrives (200 clients must not hold
/// 200 bodies): the status, `Retry-After`, and the body's length and sha256.
fn get_hashed(addr: SocketAddr, path: &str) -> Result<(u16, Option<u64>, u64, String), String> {
    let mut r = BufReader::new(request(addr, path)?);
    let mut head = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        match r.read_line(&mut line) {
            Ok(0) => return Err(format!("head cut: {head:?}")),
            Ok(_) if line == "\r\n" => break,
            Ok(_) => head.push(line.trim_end().to_string()),
            Err(e) => return Err(format!("read head: {e}")),
        }
    }
    let status = head
        .first()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or("no status")?;
    let field = |name: &str| {
        head.iter().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    };
    let len: u64 = field("content-length")
        .and_then(|v| v.parse().ok())
        .ok_or("no Content-Length")?;
    let mut hasher = HashingSink(Sha256::new(), 0);
    std::io::copy(&mut r, &mut hasher).map_err(|e| format!("read body: {e}"))?;
    if hasher.1 != len {
        return Err(format!("body {} of {len} bytes", hasher.1));
    }
    let retry_after = field("retry-after").and_then(|v| v.parse().ok());
    Ok((status, retry_after, len, hex::encode(hasher.0.finalize())))
}

struct HashingSink(Sha256, u64);

impl Write for HashingSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        self.1 += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A well-behaved client: GETs the file, and after a `503` waits (100 ms
/// doubling, capped by `Retry-After`) and tries again. Returns the body's
/// sha256 and how many `503`s it was given.
fn fetch_politely(addr: SocketAddr, path: &str, jitter: u64) -> Result<(String, u32), String> {
    let mut busy = 0u32;
    for attempt in 0..30u32 {
        let (status, retry_after, _, sha) = get_hashed(addr, path)?;
        match status {
            200 => return Ok((sha, busy)),
            503 => {
                busy += 1;
                let retry_after = retry_after.ok_or("503 without Retry-After")?;
                let backoff = (100u64 << attempt.min(4)) + jitter % 50;
                thread::sleep(Duration::from_millis(backoff.min(retry_after * 1000)));
            }
            s => return Err(format!("HTTP {s}")),
        }
    }
    Err(format!("still 503 after {busy} tries"))
}

fn resolve_path() -> String {
    format!("/{REPO}/resolve/main/{FILE}")
}

fn fixture() -> (tempfile::TempDir, Vec<u8>) {
    let tmp = tempfile::tempdir().unwrap();
    let data = bytes(FILE_LEN, 7);
    write_repo(tmp.path(), REPO, &[(FILE, &data)]);
    (tmp, data)
}

/// Trickles a request head one byte every 100 ms until the server answers
/// or closes; returns how long that took and whether it answered 408.
fn slow_client(addr: SocketAddr, started: &Barrier) -> Result<(Duration, bool), String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(30))
        .map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(Duration::from_millis(100))).ok();
    s.set_write_timeout(Some(Duration::from_secs(5))).ok();
    let t0 = Instant::now();
    s.write_all(format!("GET {} HTTP/1.1\r\nX-Slow: ", resolve_path()).as_bytes())
        .map_err(|e| format!("send: {e}"))?;
    started.wait();
    let mut got = Vec::new();
    while t0.elapsed() < Duration::from_secs(60) {
        if s.write_all(b"a").is_err() {
            return Ok((t0.elapsed(), got.starts_with(b"HTTP/1.1 408")));
        }
        let mut buf = [0u8; 1024];
        match s.read(&mut buf) {
            Ok(0) => return Ok((t0.elapsed(), got.starts_with(b"HTTP/1.1 408"))),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return Ok((t0.elapsed(), got.starts_with(b"HTTP/1.1 408"))),
        }
    }
    Err("the server kept a slow client for a minute".into())
}

/// Sends a request line of up to 256 MiB with no newline; returns the bytes
/// the server took before it closed the connection.
fn huge_client(addr: SocketAddr) -> Result<u64, String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(30))
        .map_err(|e| format!("connect: {e}"))?;
    s.set_write_timeout(Some(Duration::from_secs(20))).ok();
    let chunk = vec![b'a'; 64 << 10];
    let mut sent = 0u64;
    s.write_all(b"GET /").map_err(|e| format!("send: {e}"))?;
    while sent < 256 << 20 {
        match s.write(&chunk) {
            Ok(n) => sent += n as u64,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return Err(format!(
                    "the server stopped reading after {sent} bytes but kept the connection open"
                ))
            }
            Err(_) => return Ok(sent),
        }
    }
    Err("the server read a 256 MiB request line".into())
}

/// 200 clients at once, 20 slow heads and one 256 MiB line against the
/// default limits (64 connections, 16 KiB heads); the head timeout is cut
/// to 2 s to keep the test short.
#[test]
fn two_hundred_clients_slow_heads_and_a_huge_line() {
    let (tmp, data) = fixture();
    let want = sha256_hex(&data);
    let mut server = Served::start(tmp.path(), &["--header-timeout", "2", "--log"]);
    let (addr, pid) = (server.addr, server.pid());
    // Warm up: the first listing hashes the file.
    let warm = get(addr, &resolve_path()).expect("first GET");
    assert_eq!(warm.status, 200);
    let baseline_kib = proc_kib(pid, "VmRSS:");

    let done = Arc::new(AtomicBool::new(false));
    let peak_rss = Arc::new(AtomicU64::new(0));
    let sampler = {
        let (done, peak) = (done.clone(), peak_rss.clone());
        thread::spawn(move || {
            while !done.load(Ordering::Acquire) {
                peak.fetch_max(proc_kib(pid, "VmRSS:"), Ordering::Relaxed);
                thread::sleep(Duration::from_millis(20));
            }
        })
    };

    let t0 = Instant::now();
    let slow_started = Arc::new(Barrier::new(21));
    let slow: Vec<_> = (0..20)
        .map(|_| {
            let b = slow_started.clone();
            thread::spawn(move || slow_client(addr, &b))
        })
        .collect();
    slow_started.wait();
    let huge = thread::spawn(move || huge_client(addr));
    let go = Arc::new(Barrier::new(200));
    let clients: Vec<_> = (0..200u64)
        .map(|i| {
            let go = go.clone();
            thread::Builder::new()
                .stack_size(256 << 10)
                .spawn(move || {
                    go.wait();
                    fetch_politely(addr, &resolve_path(), i * 7919)
                })
                .expect("spawn client")
        })
        .collect();

    let mut answered_503 = 0u32;
    for (i, c) in clients.into_iter().enumerate() {
        let (sha, busy) = c
            .join()
            .expect("client thread")
            .unwrap_or_else(|e| panic!("client {i}: {e}"));
        assert_eq!(sha, want, "client {i} got other bytes");
        answered_503 += busy;
    }
    let clients_done = t0.elapsed();
    let mut slowest = Duration::ZERO;
    let mut answered_408 = 0;
    for (i, c) in slow.into_iter().enumerate() {
        let (took, got_408) = c
            .join()
            .expect("slow thread")
            .unwrap_or_else(|e| panic!("slow client {i}: {e}"));
        slowest = slowest.max(took);
        answered_408 += usize::from(got_408);
    }
    let huge_sent = huge
        .join()
        .expect("huge thread")
        .unwrap_or_else(|e| panic!("huge client: {e}"));
    done.store(true, Ordering::Release);
    sampler.join().unwrap();
    let hwm_kib = proc_kib(pid, "VmHWM:");
    let peak_kib = peak_rss.load(Ordering::Relaxed).max(hwm_kib);

    // Still up and serving the right bytes.
    assert!(server.alive(), "the server died");
    let after = get(addr, &resolve_path()).expect("GET after the load");
    assert_eq!(sha256_hex(&after.body), want);
    let log = server.stop();
    let server_503 = log.iter().filter(|l| l.starts_with("busy:")).count();
    let server_431 = log.iter().filter(|l| l.starts_with("refused: 431")).count();
    let server_408 = log.iter().filter(|l| l.starts_with("refused: 408")).count();

    eprintln!(
        "mirror load: 200 clients correct in {:.2} s ({answered_503} answers 503, {server_503} by the server's count); \
         20 slow heads dropped, the last after {:.2} s ({answered_408} read their 408, {server_408} sent); \
         huge line: server closed after {} KiB of 256 MiB offered ({server_431} answered 431); \
         RSS {} MiB before, peak {} MiB (VmHWM {} MiB); total {:.2} s",
        clients_done.as_secs_f64(),
        slowest.as_secs_f64(),
        huge_sent >> 10,
        baseline_kib >> 10,
        peak_kib >> 10,
        hwm_kib >> 10,
        t0.elapsed().as_secs_f64(),
    );
    // Slow heads are dropped at 2 s (plus up to 2 s answering them); 20 s
    // leaves room for a loaded machine and still fails a server that waits
    // on them for good.
    assert!(slowest < Duration::from_secs(20), "slowest {slowest:?}");
    assert_eq!(server_408, 20, "{log:?}");
    // Before, the server kept reading the line (all 256 MiB, in memory).
    assert!(huge_sent < 32 << 20, "the server took {huge_sent} bytes");
    assert_eq!(server_431, 1, "{log:?}");
    // Before: +257 MiB for the huge line alone. The bound leaves room for
    // 64 connection threads and 16 answering 503s, and a debug build.
    assert!(
        peak_kib < baseline_kib + (64 << 10),
        "peak RSS {peak_kib} KiB from {baseline_kib} KiB"
    );
}

/// With every connection taken, the next client is answered 503 with
/// Retry-After at once, and served once a slot is free.
#[test]
fn connections_over_the_cap_get_503_with_retry_after() {
    let (tmp, data) = fixture();
    let server = Served::start(tmp.path(), &["--max-connections", "2"]);
    let addr = server.addr;
    // Two connections that send nothing hold both slots (the accept loop
    // takes connections in order, so they are served before the third).
    let idle: Vec<TcpStream> = (0..2)
        .map(|_| TcpStream::connect(addr).expect("connect"))
        .collect();
    let t = Instant::now();
    let a = get(addr, &resolve_path()).expect("third client");
    assert_eq!(a.status, 503, "{:?}", String::from_utf8_lossy(&a.body));
    assert_eq!(a.header("retry-after"), Some("1"));
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    drop(idle);
    let (sha, _) = fetch_politely(addr, &resolve_path(), 0).expect("served after");
    assert_eq!(sha, sha256_hex(&data));
    server.stop();
}

/// A head over the cap is answered 431 having read no more than the cap;
/// one just under it is served.
#[test]
fn request_heads_over_the_cap_get_431() {
    let (tmp, data) = fixture();
    let server = Served::start(tmp.path(), &["--max-header-bytes", "4096"]);
    let addr = server.addr;
    let head = |pad: usize| {
        format!(
            "GET {} HTTP/1.1\r\nHost: x\r\nX-Pad: {}\r\nConnection: close\r\n\r\n",
            resolve_path(),
            "p".repeat(pad)
        )
    };
    let send = |text: String| {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        s.write_all(text.as_bytes()).unwrap();
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).unwrap();
        parse(&raw).unwrap()
    };
    let fits = head(0);
    let fits = head(4096 - fits.len());
    assert_eq!(fits.len(), 4096);
    let a = send(fits);
    assert_eq!((a.status, a.body.len()), (200, data.len()));
    let a = send(head(4097 - head(0).len()));
    assert_eq!(a.status, 431);
    server.stop();
}

/// The request log keeps the latest entries only.
#[test]
fn the_request_log_is_a_bounded_ring() {
    let (tmp, _) = fixture();
    let limits = MirrorLimits {
        log_entries: 3,
        ..MirrorLimits::default()
    };
    let server = MirrorServer::start_with(tmp.path(), "127.0.0.1:0", limits).unwrap();
    for i in 0..5 {
        let a = get(server.addr(), &format!("/api/models/{REPO}?n={i}")).unwrap();
        assert_eq!(a.status, 200);
    }
    let log = server.log();
    let paths: Vec<&str> = log.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        paths,
        [2, 3, 4].map(|i| format!("/api/models/{REPO}?n={i}")),
        "{log:?}"
    );
    assert_eq!(server.stats().served_connections, 5);
}
