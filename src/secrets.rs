//! The Hugging Face token: where it comes from, and keeping it out of
//! everything onboard writes.
//!
//! [`resolve_token`] is the one definition of the token's source, in
//! huggingface_hub's order, used both by the Hub client (what it sends) and
//! by [`redact`] (what it hides). Two definitions drift apart: a token read
//! from a file the redaction did not know about would be sent to the Hub and
//! still printed in logs and records.
//!
//! Everything onboard prints or writes that can carry text from outside —
//! step logs and events, state records under `.onboard/`, step outputs (and
//! so the reports, models.conf lines and templates they feed), error
//! messages — passes through [`redact`] or [`redact_json`].

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Environment variables whose values are treated as secrets by
/// [`redact`], whether or not the Hub client uses them (`HF_API_TOKEN` is
/// an old name some scripts still set).
pub const SECRET_VARS: &[&str] = &["HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_API_TOKEN"];

/// Values shorter than this are not redacted: they would replace ordinary
/// words, and no real token is that short.
const MIN_SECRET_LEN: usize = 8;

/// A Hub access token. Its `Debug` prints `***` and it has no `Display`, so
/// it cannot leak through a log line or an error by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl Token {
    /// Wraps a token, cleaned as huggingface_hub does (line breaks dropped,
    /// surrounding whitespace cut); `None` when nothing is left.
    pub fn new(value: impl Into<String>) -> Option<Self> {
        let v: String = value
            .into()
            .chars()
            .filter(|c| *c != '\r' && *c != '\n')
            .collect();
        let v = v.trim();
        (!v.is_empty()).then(|| Token(v.to_string()))
    }

    /// The secret itself, for the `Authorization` header and redaction only.
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(***)")
    }
}

/// Where a resolved token came from (for messages; never the value).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TokenSource {
    /// `HF_TOKEN`.
    HfToken,
    /// `HUGGING_FACE_HUB_TOKEN` (huggingface_hub's older name).
    HuggingFaceHubToken,
    /// A token file: `HF_TOKEN_PATH`, else `$HF_HOME/token`, else
    /// `$XDG_CACHE_HOME/huggingface/token`, else `~/.cache/huggingface/token`.
    File(PathBuf),
}

/// `HF_HOME` as huggingface_hub computes it: `$HF_HOME`, else
/// `$XDG_CACHE_HOME/huggingface`, else `~/.cache/huggingface`. Empty values
/// count as unset.
pub fn hf_home(get: &dyn Fn(&str) -> Option<String>) -> PathBuf {
    let nonempty = |k: &str| get(k).filter(|v| !v.trim().is_empty());
    match nonempty("HF_HOME") {
        Some(h) => expand_home(&h, get),
        None => nonempty("XDG_CACHE_HOME")
            .map(|x| expand_home(&x, get))
            .unwrap_or_else(|| home_dir(get).join(".cache"))
            .join("huggingface"),
    }
}

/// The token file huggingface_hub reads (and `hf auth login` writes):
/// `$HF_TOKEN_PATH`, else `<hf_home>/token`.
pub fn token_path(get: &dyn Fn(&str) -> Option<String>) -> PathBuf {
    match get("HF_TOKEN_PATH").filter(|v| !v.trim().is_empty()) {
        Some(p) => expand_home(&p, get),
        None => hf_home(get).join("token"),
    }
}

/// The token the Hub client sends, in huggingface_hub's order: `HF_TOKEN`
/// (when not empty), else `HUGGING_FACE_HUB_TOKEN`, else the file at
/// [`token_path`]. A value that is only whitespace gives no token and does
/// not fall through to the next variable (as in huggingface_hub).
pub fn resolve_token(get: &dyn Fn(&str) -> Option<String>) -> Option<(Token, TokenSource)> {
    let from_env = match get("HF_TOKEN").filter(|v| !v.is_empty()) {
        Some(v) => Some((v, TokenSource::HfToken)),
        None => get("HUGGING_FACE_HUB_TOKEN")
            .filter(|v| !v.is_empty())
            .map(|v| (v, TokenSource::HuggingFaceHubToken)),
    };
    if let Some((token, source)) = from_env.and_then(|(v, s)| Token::new(v).map(|t| (t, s))) {
        return Some((token, source));
    }
    let path = token_path(get);
    let text = std::fs::read_to_string(&path).ok()?;
    Token::new(text).map(|t| (t, TokenSource::File(path)))
}

/// [`resolve_token`] over the process environment.
pub fn token_from_env() -> Option<Token> {
    resolve_token(&env_var).map(|(t, _)| t)
}

/// Tokens this process has sent (registered by the Hub client), redacted
/// even if the file they came from changes or disappears later.
static USED: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Records a token the process is about to use, so [`redact`] hides it for
/// the rest of the run whatever happens to its source.
pub fn remember(token: &Token) {
    let mut used = USED.lock().unwrap_or_else(|p| p.into_inner());
    if !used.iter().any(|v| v == token.expose()) {
        used.push(token.expose().to_string());
    }
}

/// Replaces every occurrence of a known secret value in `text` with `***`.
pub fn redact(text: &str) -> String {
    redact_with(text, &secret_values(&env_var))
}

/// Redacts every string (keys included) inside a JSON value.
pub fn redact_json(value: &serde_json::Value) -> serde_json::Value {
    let secrets = secret_values(&env_var);
    redact_json_with(value, &secrets)
}

fn redact_json_with(value: &serde_json::Value, secrets: &[String]) -> serde_json::Value {
    use serde_json::Value;
    match value {
        Value::String(s) => Value::String(redact_with(s, secrets)),
        Value::Array(items) => {
            Value::Array(items.iter().map(|v| redact_json_with(v, secrets)).collect())
        }
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (redact_with(k, secrets), redact_json_with(v, secrets)))
                .collect(),
        ),
        other => other.clone(),
    }
}

fn redact_with(text: &str, secrets: &[String]) -> String {
    let mut out = text.to_string();
    for value in secrets {
        if out.contains(value.as_str()) {
            out = out.replace(value.as_str(), "***");
        }
    }
    out
}

/// Every value to hide: the token [`resolve_token`] gives (the one the
/// client sends), any other set secret variable, and the tokens already
/// used. Longest first, so a token that contains another is hidden whole.
fn secret_values(get: &dyn Fn(&str) -> Option<String>) -> Vec<String> {
    let mut values: Vec<String> = SECRET_VARS
        .iter()
        .filter_map(|name| get(name))
        .filter_map(|v| Token::new(v).map(|t| t.0))
        .collect();
    if let Some((token, _)) = resolve_token(get) {
        values.push(token.0);
    }
    values.extend(
        USED.lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .cloned(),
    );
    values.retain(|v| v.len() >= MIN_SECRET_LEN);
    values.sort_by(|a, b| b.len().cmp(&a.len()).then(a.cmp(b)));
    values.dedup();
    values
}

fn env_var(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

fn home_dir(get: &dyn Fn(&str) -> Option<String>) -> PathBuf {
    PathBuf::from(
        get("HOME")
            .filter(|h| !h.trim().is_empty())
            .unwrap_or_else(|| "/".to_string()),
    )
}

/// A leading `~` or `~/` means the home directory, as `os.path.expanduser`.
fn expand_home(p: &str, get: &dyn Fn(&str) -> Option<String>) -> PathBuf {
    if p == "~" {
        home_dir(get)
    } else if let Some(rest) = p.strip_prefix("~/") {
        home_dir(get).join(rest)
    } else {
        Path::new(p).to_path_buf()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    const SECRET: &str = "hf_unitTestSecret0123456789";

    fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k: &str| map.get(k).cloned()
    }

    fn token_of(get: &dyn Fn(&str) -> Option<String>) -> Option<(String, TokenSource)> {
        resolve_token(get).map(|(t, s)| (t.0, s))
    }

    #[test]
    fn hf_token_comes_first() {
        let get = vars(&[
            ("HF_TOKEN", " hf_first0000\n"),
            ("HUGGING_FACE_HUB_TOKEN", "hf_second000"),
            ("HF_TOKEN_PATH", "/nonexistent/token"),
        ]);
        assert_eq!(
            token_of(&get),
            Some(("hf_first0000".into(), TokenSource::HfToken))
        );
    }

    #[test]
    fn legacy_variable_when_hf_token_empty() {
        let get = vars(&[("HF_TOKEN", ""), ("HUGGING_FACE_HUB_TOKEN", "hf_second000")]);
        assert_eq!(
            token_of(&get),
            Some(("hf_second000".into(), TokenSource::HuggingFaceHubToken))
        );
    }

    /// Each file source, in order; a higher one shadows the lower ones.
    #[test]
    fn file_sources_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let write = |rel: &str, text: &str| {
            let p = d.join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, text).unwrap();
            p
        };
        let explicit = write("explicit/tok", "hf_fromPath00\r\n");
        let home_tok = write("hfhome/token", "hf_fromHfHome\n");
        let xdg_tok = write("xdg/huggingface/token", "hf_fromXdg000\n");
        let dot_tok = write("home/.cache/huggingface/token", "hf_fromHome00\n");
        let s = |p: &Path| p.to_str().unwrap().to_string();
        let (explicit_s, hfhome_s, xdg_s, home_s) = (
            s(&explicit),
            s(&d.join("hfhome")),
            s(&d.join("xdg")),
            s(&d.join("home")),
        );
        let all = [
            ("HF_TOKEN_PATH", explicit_s.as_str()),
            ("HF_HOME", hfhome_s.as_str()),
            ("XDG_CACHE_HOME", xdg_s.as_str()),
            ("HOME", home_s.as_str()),
        ];
        let expected = [
            ("hf_fromPath00", explicit),
            ("hf_fromHfHome", home_tok),
            ("hf_fromXdg000", xdg_tok),
            ("hf_fromHome00", dot_tok),
        ];
        for (skip, (value, path)) in expected.into_iter().enumerate() {
            let get = vars(&all[skip..]);
            assert_eq!(
                token_of(&get),
                Some((value.to_string(), TokenSource::File(path))),
                "sources from {}",
                all[skip].0
            );
        }
    }

    #[test]
    fn token_path_expands_home_and_ignores_empty() {
        let get = vars(&[("HF_TOKEN_PATH", "~/t"), ("HOME", "/h")]);
        assert_eq!(token_path(&get), PathBuf::from("/h/t"));
        let get = vars(&[("HF_TOKEN_PATH", " "), ("HF_HOME", "/x"), ("HOME", "/h")]);
        assert_eq!(token_path(&get), PathBuf::from("/x/token"));
        let get = vars(&[("HOME", "/h")]);
        assert_eq!(hf_home(&get), PathBuf::from("/h/.cache/huggingface"));
    }

    #[test]
    fn blank_values_give_no_token() {
        let get = vars(&[("HF_TOKEN", " \n"), ("HF_TOKEN_PATH", "/nonexistent/token")]);
        assert_eq!(token_of(&get), None);
        assert_eq!(Token::new("\r\n  "), None);
    }

    /// Redaction hides exactly what the client would send, from whichever
    /// source it comes, including a token file only `HF_TOKEN_PATH` names.
    #[test]
    fn redaction_covers_the_resolved_token() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tok");
        std::fs::write(&path, format!("{SECRET}\n")).unwrap();
        let path_s = path.to_str().unwrap().to_string();
        let get = vars(&[("HF_TOKEN_PATH", path_s.as_str())]);
        let secrets = secret_values(&get);
        assert!(secrets.iter().any(|s| s == SECRET), "{secrets:?}");
        let text = format!("Authorization: Bearer {SECRET} and again {SECRET}.");
        assert_eq!(
            redact_with(&text, &secrets),
            "Authorization: Bearer *** and again ***."
        );
        let json = serde_json::json!({"a": [format!("x{SECRET}")], SECRET: 1});
        let red = redact_json_with(&json, &secrets);
        assert!(!red.to_string().contains(SECRET), "{red}");
        assert_eq!(red["a"][0], "x***");
    }

    #[test]
    fn short_values_are_not_redacted_and_longest_wins() {
        let get = vars(&[("HF_TOKEN", "abc"), ("HF_API_TOKEN", "hf_long_one_1234")]);
        let secrets = secret_values(&get);
        assert!(!secrets.iter().any(|s| s == "abc"));
        let get = vars(&[
            ("HF_TOKEN", "hf_abcdefgh_XYZ"),
            ("HF_API_TOKEN", "hf_abcdefgh"),
        ]);
        let secrets = secret_values(&get);
        assert_eq!(redact_with("t=hf_abcdefgh_XYZ", &secrets), "t=***");
    }

    #[test]
    fn remembered_tokens_stay_redacted() {
        let token = Token::new("hf_rememberedToken42").unwrap();
        remember(&token);
        let secrets = secret_values(&vars(&[]));
        assert_eq!(redact_with("x hf_rememberedToken42 y", &secrets), "x *** y");
        assert_eq!(format!("{token:?}"), "Token(***)");
    }
}
