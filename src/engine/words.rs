//! Splitting flag strings (`FLAGS=--jinja -np 1`) into words the way a POSIX
//! shell would, and quoting words back so a printed command can be pasted
//! into a shell whatever the paths contain.

/// Splits `text` into words: whitespace separates, `'…'` is literal,
/// `"…"` allows `\"` and `\\`, a backslash outside quotes escapes one char.
pub fn split(text: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => word.push(c),
                        None => return Err(format!("unclosed `'` in `{text}`")),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\' | '$' | '`')) => word.push(c),
                            Some(c) => {
                                word.push('\\');
                                word.push(c);
                            }
                            None => return Err(format!("unclosed `\"` in `{text}`")),
                        },
                        Some(c) => word.push(c),
                        None => return Err(format!("unclosed `\"` in `{text}`")),
                    }
                }
            }
            '\\' => {
                in_word = true;
                match chars.next() {
                    Some(c) => word.push(c),
                    None => return Err(format!("`{text}` ends with a lone `\\`")),
                }
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

/// Quotes a word for a POSIX shell only when it needs it.
pub fn quote(word: &str) -> String {
    let safe = !word.is_empty()
        && word.chars().all(|c| {
            c.is_ascii_alphanumeric()
                || matches!(c, '-' | '_' | '.' | '/' | ':' | '=' | ',' | '+' | '@' | '%')
        });
    if safe {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', "'\\''"))
    }
}

/// A whole command line, quoted.
pub fn join(words: &[String]) -> String {
    words.iter().map(|w| quote(w)).collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_like_a_shell() {
        assert_eq!(split("--jinja  -np 1").unwrap(), ["--jinja", "-np", "1"]);
        assert_eq!(
            split(r#"-ot 'exps=CPU' --x "a \"b\" c" d\ e"#).unwrap(),
            ["-ot", "exps=CPU", "--x", "a \"b\" c", "d e"]
        );
        assert_eq!(split("--empty ''").unwrap(), ["--empty", ""]);
        assert!(split("'open").is_err());
    }

    #[test]
    fn quoting_round_trips_through_split() {
        for w in [
            "plain",
            "with space",
            "it's",
            "$HOME",
            "a\"b",
            "",
            "models/Qwen3.5/x.gguf",
            "ünï",
        ] {
            assert_eq!(split(&quote(w)).unwrap(), vec![w.to_string()], "{w}");
        }
        assert_eq!(quote("models/Qwen3.5/x.gguf"), "models/Qwen3.5/x.gguf");
    }
}
