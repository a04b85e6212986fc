//! Did-you-mean for what people type: commands (before a word is taken for
//! a model id, so `onboard valdate` is not "no manifest"), model ids (a
//! typo, the start of an id, or a profile name given for its model).

use crate::source::diag::did_you_mean;
use crate::workspace::Workspace;

/// The visible command closest to `word`, when `word` is no command at all.
pub fn command(word: &str) -> Option<String> {
    let cli = <super::Cli as clap::CommandFactory>::command();
    let names: Vec<String> = cli
        .get_subcommands()
        .filter(|c| !c.is_hide_set())
        .map(|c| c.get_name().to_string())
        .collect();
    if names.iter().any(|n| n == word) {
        return None;
    }
    did_you_mean(word, names.iter().map(String::as_str)).map(str::to_string)
}

/// What `id`, which names no manifest, most likely meant: the model whose
/// production profile it names, the one model whose id starts with it, or
/// the closest id. Phrased to follow the "no manifest" error.
pub fn model(ws: &Workspace, id: &str) -> Option<String> {
    let ids = ws.manifest_ids();
    let by_profile: Vec<&String> = ids
        .iter()
        .filter(|m| {
            ws.load_manifest(m)
                .is_ok_and(|man| man.profile.as_deref().unwrap_or(m) == id)
        })
        .collect();
    if let [model] = by_profile[..] {
        return Some(format!(
            "`{id}` is the profile of model `{model}`: run `onboard {model}`"
        ));
    }
    let starting: Vec<&String> = ids.iter().filter(|m| m.starts_with(id)).collect();
    match starting[..] {
        [model] => return Some(format!("did you mean `{model}`?")),
        [_, _, ..] => {
            let list: Vec<String> = starting.iter().map(|m| format!("`{m}`")).collect();
            return Some(format!("did you mean one of {}?", list.join(", ")));
        }
        [] => {}
    }
    did_you_mean(id, ids.iter().map(String::as_str)).map(|m| format!("did you mean `{m}`?"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_misspelt_command_is_suggested_and_a_real_one_is_not() {
        assert_eq!(command("valdate").as_deref(), Some("validate"));
        assert_eq!(command("staus").as_deref(), Some("status"));
        assert_eq!(command("validate"), None);
        assert_eq!(command("qwen3.5-35b-a3b"), None);
    }
}
