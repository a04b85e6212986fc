//! The llama-server command line of a models.conf profile. `onboard launch`
//! prints or runs it, the exports reuse it, and the context test starts the
//! server with it: one translation, so they cannot drift apart.

use super::words;
use crate::workspace::models_conf::Profile;
use std::path::Path;

/// Profile keys that become llama-server flags, in the order they are emitted.
pub const FLAG_KEYS: &[(&str, &str)] = &[
    ("CTX_SIZE", "-c"),
    ("FIT", "--fit"),
    ("FIT_TARGET", "--fit-target"),
    ("FIT_CTX", "--fit-ctx"),
    ("GPU_LAYERS", "-ngl"),
    ("TENSOR_SPLIT", "-ts"),
    ("OVERRIDE_TENSOR", "-ot"),
    ("N_CPU_MOE", "--n-cpu-moe"),
    ("CACHE_TYPE_K", "-ctk"),
    ("CACHE_TYPE_V", "-ctv"),
];

/// Keys holding whole flag strings, appended after the keyed flags.
pub const WORD_KEYS: &[&str] = &["FLAGS", "SAMPLERS"];

/// Keys that describe a profile without being flags (`MODEL` and `MMPROJ`
/// become paths under models/).
pub const INFO_KEYS: &[&str] = &["MODEL", "MMPROJ", "SPEED", "SPEED_EMBEDDED", "DESCRIPTION"];

#[derive(Debug, Clone, PartialEq)]
pub struct Launch {
    pub program: String,
    pub args: Vec<String>,
}

impl Launch {
    pub fn argv(&self) -> Vec<String> {
        std::iter::once(self.program.clone())
            .chain(self.args.iter().cloned())
            .collect()
    }

    /// Shell-quoted, ready to paste.
    pub fn command_line(&self) -> String {
        words::join(&self.argv())
    }
}

/// Where the server listens; `None` leaves llama-server's defaults.
#[derive(Debug, Clone, Default)]
pub struct Listen {
    pub host: Option<String>,
    pub port: Option<String>,
}

/// Builds the llama-server invocation for `profile`. `models_dir` resolves
/// `MODEL=` (relative to `models/`).
pub fn command(
    profile: &Profile,
    program: &str,
    models_dir: &Path,
    listen: &Listen,
) -> Result<Launch, String> {
    let model = profile
        .get("MODEL")
        .filter(|m| !m.is_empty())
        .ok_or_else(|| {
            format!(
                "profile `[{}]` has no MODEL= line; add the GGUF path relative to models/",
                profile.id
            )
        })?;
    let mut args = vec![
        "-m".to_string(),
        models_dir.join(model).to_string_lossy().into_owned(),
    ];
    if let Some(mmproj) = profile.get("MMPROJ").filter(|m| !m.is_empty()) {
        args.push("--mmproj".into());
        args.push(models_dir.join(mmproj).to_string_lossy().into_owned());
    }
    args.push("--alias".into());
    args.push(profile.id.clone());
    for (key, flag) in FLAG_KEYS {
        if let Some(value) = profile.get(key).filter(|v| !v.is_empty()) {
            args.push(flag.to_string());
            args.push(value.to_string());
        }
    }
    for key in WORD_KEYS {
        if let Some(value) = profile.get(key) {
            let split = words::split(value)
                .map_err(|e| format!("profile `[{}]`, {key}=: {e}", profile.id))?;
            args.extend(split);
        }
    }
    if let Some(host) = &listen.host {
        args.push("--host".into());
        args.push(host.clone());
    }
    if let Some(port) = &listen.port {
        args.push("--port".into());
        args.push(port.clone());
    }
    Ok(Launch {
        program: program.to_string(),
        args,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(entries: &[(&str, &str)]) -> Profile {
        Profile {
            id: "qwen35-35b".into(),
            line: 1,
            entries: entries
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    #[test]
    fn a_projector_is_a_path_under_models_like_the_weights() {
        let p = profile(&[("MODEL", "Q/M.gguf"), ("MMPROJ", "Q/mmproj-F16.gguf")]);
        let l = command(&p, "llama-server", Path::new("/m"), &Listen::default()).unwrap();
        assert_eq!(
            l.args[..4],
            ["-m", "/m/Q/M.gguf", "--mmproj", "/m/Q/mmproj-F16.gguf"]
        );
    }

    #[test]
    fn builds_the_server_command_from_a_profile() {
        let p = profile(&[
            (
                "MODEL",
                "Qwen3.5/MoE/35B/UD6_K_XL/Qwen3.5-35B-A3B-UD-Q6_K_XL.gguf",
            ),
            ("CTX_SIZE", "262144"),
            ("FIT", "on"),
            ("FIT_TARGET", "1024"),
            ("FLAGS", "--jinja -np 1 --no-context-shift"),
            (
                "SAMPLERS",
                "--temp 0.6 --top-p 0.95 --top-k 20 --min-p 0 --presence-penalty 0",
            ),
            ("SPEED", "gen 100 t/s"),
        ]);
        let l = command(
            &p,
            "llama-server",
            Path::new("/ws/my models"),
            &Listen {
                host: None,
                port: Some("8080".into()),
            },
        )
        .unwrap();
        assert_eq!(
            l.command_line(),
            "llama-server -m '/ws/my models/Qwen3.5/MoE/35B/UD6_K_XL/Qwen3.5-35B-A3B-UD-Q6_K_XL.gguf' --alias qwen35-35b -c 262144 --fit on --fit-target 1024 --jinja -np 1 --no-context-shift --temp 0.6 --top-p 0.95 --top-k 20 --min-p 0 --presence-penalty 0 --port 8080"
        );
        assert_eq!(words::split(&l.command_line()).unwrap(), l.argv());
    }

    #[test]
    fn a_profile_without_model_is_an_error() {
        let e = command(
            &profile(&[("CTX_SIZE", "1")]),
            "llama-server",
            Path::new("m"),
            &Listen::default(),
        )
        .unwrap_err();
        assert!(e.contains("no MODEL= line"), "{e}");
    }
}
