//! Hand edits of a profile survive the steps that write it. A person tunes
//! `CTX_SIZE` or `FIT_TARGET` in models.conf and reruns the context test;
//! when the profile step reruns later (evaluate changed, `--force`), it must
//! not put its own value back without a word. What it wrote last time (its
//! recorded outputs) tells its own lines from a person's: a managed key
//! whose value differs from that, and from what the step would write now,
//! was edited by hand and is kept. A deleted line is not an edit to keep:
//! deleting it is how a person asks for onboard's value again.

use crate::workspace::models_conf::{self, ConfError, Profile};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::path::Path;

/// A value set by hand where the step would write another; kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct HandEdit {
    pub key: String,
    /// The value in the file, kept.
    pub value: String,
    /// What the step would have written (`None`: it would remove the key).
    pub generated: Option<String>,
}

/// An upsert with the hand edits taken out.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Merge {
    /// The entries to write.
    pub entries: Vec<(String, String)>,
    /// The keys the step may set or remove.
    pub managed: Vec<String>,
    pub kept: Vec<HandEdit>,
}

impl Merge {
    pub fn managed(&self) -> Vec<&str> {
        self.managed.iter().map(String::as_str).collect()
    }
}

/// Splits an upsert of `entries` (and removal of the other `managed` keys)
/// into what to write and the hand edits to keep. `last`: what the step
/// wrote the last time it finished; without it (first run, or a record from
/// before this was tracked) nothing counts as a hand edit.
pub fn merge(
    current: Option<&Profile>,
    last: Option<&[(String, String)]>,
    managed: &[&str],
    entries: &[(String, String)],
) -> Merge {
    let find = |list: &[(String, String)], key: &str| {
        list.iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.to_string())
    };
    let mut keys: Vec<&str> = Vec::new();
    for k in managed
        .iter()
        .copied()
        .chain(entries.iter().map(|(k, _)| k.as_str()))
    {
        if !keys.contains(&k) {
            keys.push(k);
        }
    }
    let mut kept = Vec::new();
    if let (Some(current), Some(last)) = (current, last) {
        for key in keys.iter().copied() {
            let Some(now) = current.get(key) else {
                continue;
            };
            let generated = find(entries, key);
            if find(last, key).as_deref() != Some(now) && generated.as_deref() != Some(now) {
                kept.push(HandEdit {
                    key: key.to_string(),
                    value: now.to_string(),
                    generated,
                });
            }
        }
    }
    let is_kept = |key: &str| kept.iter().any(|e: &HandEdit| e.key == key);
    Merge {
        entries: entries
            .iter()
            .filter(|(k, _)| !is_kept(k))
            .cloned()
            .collect(),
        managed: keys
            .iter()
            .filter(|k| !is_kept(k))
            .map(|k| k.to_string())
            .collect(),
        kept,
    }
}

/// What a step wrote last time, from its recorded outputs: the
/// `{key, value}` objects of `field`, less the keys it kept as hand edits
/// (those lines were the person's, not the step's).
pub fn last_written(previous: Option<&Value>, field: &str) -> Option<Vec<(String, String)>> {
    let previous = previous?;
    let kept: Vec<&str> = previous
        .get("kept")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|e| e.get("key").and_then(Value::as_str))
                .collect()
        })
        .unwrap_or_default();
    let entries = previous.get(field)?.as_array()?;
    Some(
        entries
            .iter()
            .filter_map(|e| {
                let key = e.get("key")?.as_str()?;
                let value = e.get("value")?.as_str()?;
                (!kept.contains(&key)).then(|| (key.to_string(), value.to_string()))
            })
            .collect(),
    )
}

/// What [`upsert`] did to a profile.
pub struct Upserted {
    /// The file's bytes changed.
    pub changed: bool,
    pub kept: Vec<HandEdit>,
}

/// Writes `entries` into profile `id` of the models.conf at `path` (under
/// its lock, atomically), removing the other `managed` keys, but keeping
/// every managed line a person edited since the step last wrote the
/// profile (`previous`: the step's recorded outputs, whose `entries` are
/// what it wrote).
pub fn upsert(
    path: &Path,
    id: &str,
    managed: &[&str],
    entries: &[(String, String)],
    comment: Option<&str>,
    previous: Option<&Value>,
) -> Result<Upserted, ConfError> {
    let last = last_written(previous, "entries");
    let mut kept = Vec::new();
    let changed = models_conf::update(path, |conf| {
        let merge = merge(conf.profile(id).as_ref(), last.as_deref(), managed, entries);
        kept = merge.kept.clone();
        conf.upsert(id, &merge.managed(), &merge.entries, comment)
            .map_err(|e| e.to_string())
    })?;
    Ok(Upserted { changed, kept })
}

/// The log line for a kept edit: what was kept, what onboard would have
/// written, and how to take onboard's value instead.
pub fn describe(edit: &HandEdit, section: &str, model: &str, step: &str) -> String {
    match &edit.generated {
        Some(generated) => format!(
            "{section}: kept {}={}, edited by hand (onboard's value: {generated}); to take \
             onboard's, delete the line and run `onboard run {model} --force {step}`",
            edit.key, edit.value
        ),
        None => format!(
            "{section}: kept {}={}, edited by hand (onboard would remove it); delete the line \
             to remove it",
            edit.key, edit.value
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn profile(list: &[(&str, &str)]) -> Profile {
        Profile {
            id: "p".into(),
            line: 1,
            entries: pairs(list),
        }
    }

    #[test]
    fn only_values_that_differ_from_the_last_write_and_the_new_one_are_kept() {
        let last = pairs(&[("CTX_SIZE", "8192"), ("FIT", "on"), ("GPU_LAYERS", "999")]);
        let now = profile(&[
            ("CTX_SIZE", "4096"),   // edited by hand
            ("FIT", "on"),          // as written
            ("GPU_LAYERS", "80"),   // edited, and the step would now remove it
            ("FIT_TARGET", "2048"), // added by hand, the step writes 1024
            ("SPEED", "1 t/s"),     // not managed
        ]);
        let new = pairs(&[
            ("CTX_SIZE", "16384"),
            ("FIT", "off"),
            ("FIT_TARGET", "1024"),
        ]);
        let m = merge(
            Some(&now),
            Some(&last),
            &["CTX_SIZE", "FIT", "FIT_TARGET", "GPU_LAYERS"],
            &new,
        );
        assert_eq!(m.entries, pairs(&[("FIT", "off")]));
        assert_eq!(m.managed, vec!["FIT".to_string()]);
        let kept: Vec<(&str, &str, Option<&str>)> = m
            .kept
            .iter()
            .map(|e| (e.key.as_str(), e.value.as_str(), e.generated.as_deref()))
            .collect();
        assert_eq!(
            kept,
            vec![
                ("CTX_SIZE", "4096", Some("16384")),
                ("FIT_TARGET", "2048", Some("1024")),
                ("GPU_LAYERS", "80", None),
            ]
        );
    }

    #[test]
    fn a_deleted_line_an_agreeing_value_or_no_record_is_not_kept() {
        let last = pairs(&[("CTX_SIZE", "8192"), ("FIT", "on")]);
        let now = profile(&[("FIT", "off")]);
        let new = pairs(&[("CTX_SIZE", "8192"), ("FIT", "off")]);
        let m = merge(Some(&now), Some(&last), &["CTX_SIZE", "FIT"], &new);
        assert!(m.kept.is_empty());
        assert_eq!(m.entries, new);
        let edited = profile(&[("CTX_SIZE", "1")]);
        assert!(merge(Some(&edited), None, &["CTX_SIZE"], &new)
            .kept
            .is_empty());
    }

    #[test]
    fn the_last_write_leaves_out_what_was_kept() {
        let previous = serde_json::json!({
            "entries": [
                {"key": "CTX_SIZE", "value": "4096", "because": "edited by hand"},
                {"key": "FIT", "value": "on", "because": "rule"},
            ],
            "kept": [{"key": "CTX_SIZE", "value": "4096", "generated": "8192"}],
        });
        assert_eq!(
            last_written(Some(&previous), "entries"),
            Some(pairs(&[("FIT", "on")]))
        );
        assert_eq!(last_written(None, "entries"), None);
        assert_eq!(last_written(Some(&serde_json::json!({})), "entries"), None);
    }
}
