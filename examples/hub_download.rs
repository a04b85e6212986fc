//! Downloads one file through the library, verified, with the Hub settings
//! of the environment (`HF_ENDPOINT`, `HF_TOKEN`, `HF_HUB_OFFLINE`, ...):
//!
//! ```text
//! cargo run --release --example hub_download -- <repo> <file> <dest_dir> [revision]
//! ```
//! Progress goes to stderr (a bar on a terminal, lines otherwise); the
//! result is one JSON line on stdout. `ONBOARD_PARALLEL` and
//! `ONBOARD_CHUNK_MIB` tune the transfer.
use std::io::IsTerminal;
use std::time::Duration;

use onboard::hub::{
    download_file, DownloadOptions, FileRequest, HubClient, LineProgress, Progress, TtyProgress,
};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 3 {
        eprintln!("usage: hub_download <repo> <file> <dest_dir> [revision]");
        std::process::exit(2);
    }
    let rev = args.get(3).map(String::as_str).unwrap_or("main");
    let mut opts = DownloadOptions::default();
    if let Some(n) = std::env::var("ONBOARD_PARALLEL")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        opts.parallel = n;
    }
    if let Some(n) = std::env::var("ONBOARD_CHUNK_MIB")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    {
        opts.chunk_size = n << 20;
    }
    let progress: Box<dyn Progress> = if std::io::stderr().is_terminal() {
        Box::new(TtyProgress::new(std::io::stderr()))
    } else {
        Box::new(LineProgress::new(std::io::stderr(), Duration::from_secs(5)))
    };
    let client = HubClient::from_env();
    let req = FileRequest::new(&args[0], rev, &args[1], &args[2]);
    match download_file(&client, &req, &opts, progress.as_ref()) {
        Ok(d) => println!(
            "{}",
            serde_json::json!({
                "path": d.path, "size": d.size, "sha256": d.sha256,
                "commit": d.commit, "fetched": d.fetched, "outcome": format!("{:?}", d.outcome),
            })
        ),
        Err(e) => {
            eprintln!("hub_download: {e}");
            std::process::exit(1);
        }
    }
}
