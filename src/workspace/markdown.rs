//! Generated blocks in a person's markdown: the text between
//! `<!-- onboard:NAME -->` and `<!-- /onboard:NAME -->` belongs to onboard,
//! everything else to the person.

/// Replaces block `name`'s body with `body` (appending the block, with its
/// markers, when the text has none). Idempotent.
pub fn replace_block(text: &str, name: &str, body: &str) -> Result<String, String> {
    let open = format!("<!-- onboard:{name} -->");
    let close = format!("<!-- /onboard:{name} -->");
    let body = if body.ends_with('\n') {
        body.to_string()
    } else {
        format!("{body}\n")
    };
    match (text.find(&open), text.find(&close)) {
        (Some(start), Some(end)) if start < end => {
            let after_open = start + open.len();
            Ok(format!("{}\n{}{}", &text[..after_open], body, &text[end..]))
        }
        (None, None) => {
            let mut out = text.to_string();
            if !out.is_empty() && !out.ends_with('\n') {
                out.push('\n');
            }
            if !out.is_empty() {
                out.push('\n');
            }
            out.push_str(&format!("{open}\n{body}{close}\n"));
            Ok(out)
        }
        _ => Err(format!(
            "the markers `{open}` and `{close}` must both be present, in that order; fix or remove them"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_only_between_markers_and_is_idempotent() {
        let text = "# Title\nintro\n<!-- onboard:t -->\nold\n<!-- /onboard:t -->\noutro\n";
        let once = replace_block(text, "t", "| a |").unwrap();
        assert_eq!(
            once,
            "# Title\nintro\n<!-- onboard:t -->\n| a |\n<!-- /onboard:t -->\noutro\n"
        );
        assert_eq!(replace_block(&once, "t", "| a |").unwrap(), once);
        let appended = replace_block("# T", "t", "x").unwrap();
        assert_eq!(
            appended,
            "# T\n\n<!-- onboard:t -->\nx\n<!-- /onboard:t -->\n"
        );
        assert!(replace_block("<!-- /onboard:t --> <!-- onboard:t -->", "t", "x").is_err());
    }
}
