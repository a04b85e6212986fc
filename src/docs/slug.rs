//! GitHub-style heading anchors: the `#fragment` a link must use to land
//! on a heading, so that `onboard links` agrees with what GitHub renders.

use std::collections::HashMap;

/// The anchor GitHub derives from a heading's text: lower case; letters,
/// digits, `_` and `-` kept; each space becomes `-`; everything else
/// (punctuation, symbols, emoji) dropped. Spaces are not collapsed.
pub fn slug(text: &str) -> String {
    text.trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| {
            if c.is_alphanumeric() || c == '_' || c == '-' {
                Some(c)
            } else if c == ' ' {
                Some('-')
            } else {
                None
            }
        })
        .collect()
}

/// Slugs for a page's headings in order: a repeated slug gets `-1`, `-2`,
/// … (skipping any suffix another heading already produced).
#[derive(Debug, Default)]
pub struct Slugger {
    seen: HashMap<String, usize>,
}

impl Slugger {
    pub fn slug(&mut self, text: &str) -> String {
        let base = slug(text);
        let mut candidate = base.clone();
        while self.seen.contains_key(&candidate) {
            let n = self.seen.entry(base.clone()).or_insert(0);
            *n += 1;
            candidate = format!("{base}-{n}");
        }
        self.seen.insert(candidate.clone(), 0);
        candidate
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn github_slug_rules() {
        assert_eq!(slug("Phase 8: docs"), "phase-8-docs");
        assert_eq!(slug("Qwen3.5-35B-A3B"), "qwen35-35b-a3b");
        assert_eq!(slug("GPT-OSS 120B"), "gpt-oss-120b");
        assert_eq!(slug("HumanEval+ (base / plus)"), "humaneval-base--plus");
        assert_eq!(slug("snake_case & Co."), "snake_case--co");
        assert_eq!(slug("  Trimmed  "), "trimmed");
        assert_eq!(slug("Ünïcode Überschrift"), "ünïcode-überschrift");
        assert_eq!(slug("Why? 🚀 Because"), "why--because");
    }

    #[test]
    fn duplicates_are_numbered() {
        let mut s = Slugger::default();
        let got: Vec<String> = ["Usage", "Usage", "Usage-1", "Usage"]
            .iter()
            .map(|t| s.slug(t))
            .collect();
        assert_eq!(got, vec!["usage", "usage-1", "usage-1-1", "usage-2"]);
    }
}
