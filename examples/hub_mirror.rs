//! Serves a directory of repos (`<root>/<owner>/<name>/<files>`) over the
//! Hub's routes, for air-gapped machines and the download benchmark:
//!
//! ```text
//! cargo run --release --example hub_mirror -- <root> [127.0.0.1:8089]
//! HF_ENDPOINT=http://127.0.0.1:8089 hf download owner/name file.gguf
//! ```
//! `HUB_MIRROR_LOG=1` prints one line per request to stderr;
//! `HUB_MIRROR_CDN_REDIRECT=1` answers resolve requests with the Hub's 302 to
//! a storage URL, as huggingface.co does for LFS files.
use onboard::hub::MirrorServer;

fn main() {
    let mut args = std::env::args().skip(1);
    let Some(root) = args.next() else {
        eprintln!("usage: hub_mirror <root> [addr]");
        std::process::exit(2);
    };
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:8089".to_string());
    match MirrorServer::start(&root, &addr) {
        Ok(server) => {
            server.echo_log(std::env::var_os("HUB_MIRROR_LOG").is_some());
            server.redirect_to_cdn(std::env::var_os("HUB_MIRROR_CDN_REDIRECT").is_some());
            println!("{}", server.url());
            server.wait();
        }
        Err(e) => {
            eprintln!("hub_mirror: {e}");
            std::process::exit(1);
        }
    }
}
