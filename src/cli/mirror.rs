//! `onboard mirror serve <ROOT>` — a local Hub for air-gapped machines: the
//! repos under ROOT (`<owner>/<name>/<files>`) served over the Hub's routes,
//! so `HF_ENDPOINT=<url> onboard <model>` (and `hf download`) work offline.
//!
//! Loopback by default, and bounded: connections, request heads (size and
//! time) and the request log have caps, so one client cannot exhaust the
//! server for the others (see `hub::MirrorLimits`).

use super::{error, EXIT_FAILED};
use crate::hub::{MirrorLimits, MirrorServer};
use clap::{Args, Subcommand};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Args, Debug)]
pub struct MirrorArgs {
    #[command(subcommand)]
    command: MirrorCommand,
}

#[derive(Subcommand, Debug)]
enum MirrorCommand {
    /// Serve a directory of repos until interrupted.
    Serve {
        /// Holds `<owner>/<name>/<files>`.
        root: PathBuf,
        /// Address to listen on (loopback by default).
        #[arg(long, default_value = "127.0.0.1:8765")]
        addr: String,
        /// Print one line per request (and per refused connection).
        #[arg(long)]
        log: bool,
        /// Connections served at once; more are answered 503 with Retry-After.
        #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=100_000))]
        max_connections: u32,
        /// Bytes of a request line plus headers; a longer head is answered 431.
        #[arg(long, default_value_t = 16 * 1024, value_parser = clap::value_parser!(u32).range(1024..=1 << 20))]
        max_header_bytes: u32,
        /// Seconds a client has to send a request head (idle keep-alive
        /// included); slower clients are dropped.
        #[arg(long, default_value_t = 10.0, value_parser = seconds)]
        header_timeout: f64,
        /// Send each file's bytes at most this fast, in bytes per second:
        /// a link like a real Hub's, to rehearse (or time) a run over it.
        #[arg(long, value_name = "BYTES_PER_SEC", value_parser = clap::value_parser!(u64).range(1..))]
        rate: Option<u64>,
    },
}

/// A positive, finite number of seconds of at most an hour.
fn seconds(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 && v <= 3600.0 => Ok(v),
        _ => Err(format!("`{s}` is not a number of seconds in (0, 3600]")),
    }
}

pub fn execute(dir: &std::path::Path, args: &MirrorArgs) -> i32 {
    match &args.command {
        MirrorCommand::Serve {
            root,
            addr,
            log,
            max_connections,
            max_header_bytes,
            header_timeout,
            rate,
        } => {
            let root = &super::relative_to(dir, root);
            if !root.is_dir() {
                error(&format!(
                    "{} is not a directory of repos (<owner>/<name>/<files>)",
                    root.display()
                ));
                return super::EXIT_USAGE;
            }
            let limits = MirrorLimits {
                max_connections: *max_connections as usize,
                max_header_bytes: *max_header_bytes as usize,
                header_timeout: Duration::from_secs_f64(*header_timeout),
                // Nothing reads the log of a served mirror (`--log` prints
                // each entry as it happens): keep none, so it cannot grow.
                log_entries: 0,
                ..MirrorLimits::default()
            };
            match MirrorServer::start_with(root, addr, limits) {
                Ok(server) => {
                    server.echo_log(*log);
                    server.throttle(*rate);
                    if !server.addr().ip().is_loopback() {
                        eprintln!(
                            "onboard: warning: serving on {}, not loopback: every machine that can reach it can read these files",
                            server.addr()
                        );
                    }
                    println!(
                        "serving {} at {}  (export HF_ENDPOINT={})",
                        root.display(),
                        server.url(),
                        server.url()
                    );
                    server.wait();
                    0
                }
                Err(e) => {
                    error(&format!("cannot serve {}: {e}", root.display()));
                    EXIT_FAILED
                }
            }
        }
    }
}
