//! Keeps secrets (the Hugging Face token) out of everything onboard writes:
//! state records, logs, reports and error messages pass through `redact`.

/// Environment variables whose values are secrets.
pub const SECRET_VARS: &[&str] = &["HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_API_TOKEN"];

/// Replaces every occurrence of a known secret value in `text` with `***`.
pub fn redact(text: &str) -> String {
    let mut out = text.to_string();
    for value in secret_values() {
        if out.contains(&value) {
            out = out.replace(&value, "***");
        }
    }
    out
}

/// Redacts every string inside a JSON value.
pub fn redact_json(value: &serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match value {
        Value::String(s) => Value::String(redact(s)),
        Value::Array(items) => Value::Array(items.iter().map(redact_json).collect()),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (redact(k), redact_json(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

fn secret_values() -> Vec<String> {
    let mut values: Vec<String> = SECRET_VARS
        .iter()
        .filter_map(|name| std::env::var(name).ok())
        .collect();
    if let Some(token) = token_file_value() {
        values.push(token);
    }
    // Very short values would redact ordinary words; real tokens are long.
    values.retain(|v| v.trim().len() >= 8);
    values.iter().map(|v| v.trim().to_string()).collect()
}

fn token_file_value() -> Option<String> {
    let home = std::env::var_os("HF_HOME")
        .map(std::path::PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|h| std::path::Path::new(&h).join(".cache/huggingface"))
        })?;
    std::fs::read_to_string(home.join("token")).ok()
}
