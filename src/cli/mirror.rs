//! `onboard mirror serve <ROOT>` — a local Hub for air-gapped machines: the
//! repos under ROOT (`<owner>/<name>/<files>`) served over the Hub's routes,
//! so `HF_ENDPOINT=<url> onboard <model>` (and `hf download`) work offline.

use super::{error, EXIT_FAILED};
use crate::hub::MirrorServer;
use clap::{Args, Subcommand};
use std::path::PathBuf;

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
        /// Print one line per request.
        #[arg(long)]
        log: bool,
    },
}

pub fn execute(args: &MirrorArgs) -> i32 {
    match &args.command {
        MirrorCommand::Serve { root, addr, log } => {
            if !root.is_dir() {
                error(&format!(
                    "{} is not a directory of repos (<owner>/<name>/<files>)",
                    root.display()
                ));
                return super::EXIT_USAGE;
            }
            match MirrorServer::start(root, addr) {
                Ok(server) => {
                    server.echo_log(*log);
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
