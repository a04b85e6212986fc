//! EvalPlus's HumanEval+ release (`HumanEvalPlus.jsonl.gz`, v0.1.10): found in
//! EvalPlus's own cache, where `evalplus` users already have it, or downloaded
//! into that cache when online — so both tools read one copy, stored the way
//! EvalPlus stores it (decompressed, `HumanEvalPlus-v0.1.10.jsonl`).

use super::dataset::{Dataset, DatasetError, LABEL_PLUS};
use crate::hub::client::truthy;
use flate2::read::GzDecoder;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The release EvalPlus 0.3 evaluates against.
pub const VERSION: &str = "v0.1.10";
/// Where EvalPlus downloads it from.
pub const URL: &str =
    "https://github.com/evalplus/humanevalplus_release/releases/download/v0.1.10/HumanEvalPlus.jsonl.gz";
/// Another URL for the same file (a mirror, or a test's server); `off` never
/// downloads.
pub const URL_VAR: &str = "ONBOARD_HUMANEVAL_PLUS_URL";

/// The release is ~1 MB compressed; these only stop a hostile server.
const MAX_COMPRESSED_BYTES: u64 = 256 << 20;
const MAX_TEXT_BYTES: u64 = 1 << 30;

#[derive(Debug, thiserror::Error)]
pub enum ReleaseError {
    #[error("downloads are off ({0})")]
    Off(String),
    #[error("no cache directory: neither XDG_CACHE_HOME nor HOME is set")]
    NoCacheDir,
    #[error("{url}: {detail}")]
    Network { url: String, detail: String },
    #[error("{url}: the server answered HTTP {status}")]
    Status { url: String, status: u16 },
    #[error("{url}: not a gzip file of HumanEval+ problems: {detail}")]
    Corrupt { url: String, detail: String },
    #[error("{url}: the file has no plus inputs, so it is not HumanEval+")]
    NotPlus { url: String },
    #[error("{url}: {source}")]
    Invalid {
        url: String,
        #[source]
        source: DatasetError,
    },
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Whether a download may be tried, and from where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Download {
    From(String),
    /// Never downloads; the text says which setting turned it off.
    Off(String),
}

/// Where the release is cached and how it is fetched.
#[derive(Debug, Clone)]
pub struct Release {
    /// `$XDG_CACHE_HOME/evalplus/HumanEvalPlus-v0.1.10.jsonl`, else under
    /// `~/.cache` (EvalPlus's `appdirs.user_cache_dir("evalplus")` on Linux).
    pub cache_file: Option<PathBuf>,
    pub download: Download,
    /// Time to resolve and to connect: an offline machine falls back quickly.
    pub connect_timeout: Duration,
}

impl Release {
    /// Settings from the process environment.
    pub fn from_env() -> Release {
        Release::from_vars(|k| std::env::var(k).ok())
    }

    /// Settings from a variable lookup (`XDG_CACHE_HOME`, `HOME`,
    /// `HF_HUB_OFFLINE`, [`URL_VAR`]).
    pub fn from_vars(get: impl Fn(&str) -> Option<String>) -> Release {
        let nonempty = |k: &str| get(k).filter(|v| !v.trim().is_empty());
        let cache_dir = nonempty("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
            .or_else(|| nonempty("HOME").map(|h| Path::new(&h).join(".cache")));
        let cache_file = cache_dir.map(|d| {
            d.join("evalplus")
                .join(format!("HumanEvalPlus-{VERSION}.jsonl"))
        });
        let download = if get("HF_HUB_OFFLINE").is_some_and(|v| truthy(&v)) {
            Download::Off("HF_HUB_OFFLINE is set".into())
        } else {
            match nonempty(URL_VAR) {
                Some(v) if v.trim().eq_ignore_ascii_case("off") => {
                    Download::Off(format!("{URL_VAR}=off"))
                }
                Some(v) => Download::From(v.trim().to_string()),
                None => Download::From(URL.to_string()),
            }
        };
        Release {
            cache_file,
            download,
            connect_timeout: Duration::from_secs(10),
        }
    }

    /// The cached copy, when there is one.
    pub fn cached(&self) -> Option<&Path> {
        self.cache_file.as_deref().filter(|p| p.is_file())
    }

    /// Downloads the release, checks that it is HumanEval+ (every problem
    /// with base and plus inputs) and only then stores it, atomically, in
    /// the cache. Returns the cached file.
    pub fn fetch(&self) -> Result<PathBuf, ReleaseError> {
        let url = match &self.download {
            Download::From(url) => url.clone(),
            Download::Off(why) => return Err(ReleaseError::Off(why.clone())),
        };
        let cache_file = self.cache_file.clone().ok_or(ReleaseError::NoCacheDir)?;
        let network = |e: ureq::Error| ReleaseError::Network {
            url: url.clone(),
            detail: e.to_string(),
        };
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_resolve(Some(self.connect_timeout))
            .timeout_connect(Some(self.connect_timeout))
            .timeout_recv_response(Some(Duration::from_secs(60)))
            .timeout_per_read(Some(Duration::from_secs(60)))
            .max_redirects(10)
            .user_agent(format!("onboard/{}", env!("CARGO_PKG_VERSION")))
            .build()
            .new_agent();
        let mut response = agent.get(&url).call().map_err(network)?;
        let status = response.status().as_u16();
        if status != 200 {
            return Err(ReleaseError::Status { url, status });
        }
        let compressed = response
            .body_mut()
            .with_config()
            .limit(MAX_COMPRESSED_BYTES)
            .read_to_vec()
            .map_err(network)?;
        let mut text = Vec::new();
        GzDecoder::new(&compressed[..])
            .take(MAX_TEXT_BYTES)
            .read_to_end(&mut text)
            .map_err(|e| ReleaseError::Corrupt {
                url: url.clone(),
                detail: e.to_string(),
            })?;
        let dataset =
            Dataset::parse(&text, Path::new(&url)).map_err(|source| ReleaseError::Invalid {
                url: url.clone(),
                source,
            })?;
        if dataset.label != LABEL_PLUS {
            return Err(ReleaseError::NotPlus { url });
        }
        crate::atomic::write(&cache_file, &text).map_err(|source| ReleaseError::Write {
            path: cache_file.clone(),
            source,
        })?;
        Ok(cache_file)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn release(vars: &[(&str, &str)]) -> Release {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Release::from_vars(|k| vars.get(k).cloned())
    }

    #[test]
    fn the_cache_is_evalplus_own_and_offline_settings_turn_downloads_off() {
        let r = release(&[("HOME", "/home/u")]);
        assert_eq!(
            r.cache_file.as_deref(),
            Some(Path::new(
                "/home/u/.cache/evalplus/HumanEvalPlus-v0.1.10.jsonl"
            ))
        );
        assert_eq!(r.download, Download::From(URL.into()));
        let r = release(&[("HOME", "/home/u"), ("XDG_CACHE_HOME", "/c")]);
        assert_eq!(
            r.cache_file.as_deref(),
            Some(Path::new("/c/evalplus/HumanEvalPlus-v0.1.10.jsonl"))
        );
        // appdirs ignores a relative XDG_CACHE_HOME.
        let r = release(&[("HOME", "/home/u"), ("XDG_CACHE_HOME", "rel")]);
        assert!(r.cache_file.unwrap().starts_with("/home/u/.cache"));
        assert!(release(&[]).cache_file.is_none());
        assert!(matches!(
            release(&[("HF_HUB_OFFLINE", "1"), (URL_VAR, "http://x")]).download,
            Download::Off(_)
        ));
        assert!(matches!(
            release(&[(URL_VAR, "OFF")]).download,
            Download::Off(_)
        ));
        assert_eq!(
            release(&[(URL_VAR, " http://127.0.0.1:9/h.jsonl.gz ")]).download,
            Download::From("http://127.0.0.1:9/h.jsonl.gz".into())
        );
        assert!(matches!(
            release(&[(URL_VAR, "off")]).fetch(),
            Err(ReleaseError::Off(_))
        ));
    }

    /// Answers every request with `status` and `body`.
    fn serve(status: &'static str, body: Vec<u8>) -> String {
        use std::io::{BufRead, BufReader, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let mut stream = stream.unwrap();
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                while reader.read_line(&mut line).unwrap() > 0 && line != "\r\n" {
                    line.clear();
                }
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = stream.write_all(&body);
            }
        });
        format!("http://127.0.0.1:{port}/HumanEvalPlus.jsonl.gz")
    }

    fn gzip(text: &str) -> Vec<u8> {
        use std::io::Write;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(text.as_bytes()).unwrap();
        gz.finish().unwrap()
    }

    const PLUS_LINE: &str = "{\"task_id\":\"HumanEval/0\",\"prompt\":\"def f():\\n\",\"entry_point\":\"f\",\"canonical_solution\":\"  return 1\\n\",\"base_input\":[[]],\"plus_input\":[],\"atol\":0,\"contract\":\"\"}\n";

    #[test]
    fn only_a_whole_humaneval_plus_file_reaches_the_cache() {
        let cache = tempfile::tempdir().unwrap();
        let fetch = |url: String| {
            let home = cache.path().to_str().unwrap().to_string();
            release(&[("XDG_CACHE_HOME", &home), (URL_VAR, &url)]).fetch()
        };
        let dir = cache.path().join("evalplus");
        let nothing_cached = || std::fs::read_dir(&dir).map_or(0, |d| d.count()) == 0;

        let e = fetch(serve("404 Not Found", Vec::new())).unwrap_err();
        assert!(matches!(e, ReleaseError::Status { status: 404, .. }), "{e}");
        let mut truncated = gzip(&PLUS_LINE.repeat(50));
        truncated.truncate(truncated.len() / 2);
        let e = fetch(serve("200 OK", truncated)).unwrap_err();
        assert!(matches!(e, ReleaseError::Corrupt { .. }), "{e}");
        let base_only = "{\"task_id\":\"HumanEval/0\",\"prompt\":\"p\",\"entry_point\":\"f\",\"test\":\"def check(c): pass\"}\n";
        let e = fetch(serve("200 OK", gzip(base_only))).unwrap_err();
        assert!(matches!(e, ReleaseError::NotPlus { .. }), "{e}");
        let e = fetch(serve("200 OK", gzip("{\"task_id\": 3}\n"))).unwrap_err();
        assert!(e.to_string().contains(":1: not a HumanEval problem"), "{e}");
        assert!(nothing_cached());
        // Nothing listens on a closed port: a quick network error.
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let e = fetch(format!("http://127.0.0.1:{closed}/x.gz")).unwrap_err();
        assert!(matches!(e, ReleaseError::Network { .. }), "{e}");
        assert!(nothing_cached());

        let path = fetch(serve("200 OK", gzip(PLUS_LINE))).unwrap();
        assert_eq!(path, dir.join("HumanEvalPlus-v0.1.10.jsonl"));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), PLUS_LINE);
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
    }
}
