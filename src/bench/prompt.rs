//! Prompting and code extraction the way EvalPlus treats chat models.
//!
//! EvalPlus sends one user message: its instruction prefix, then the
//! problem's prompt (signature and docstring) in a fenced python block. From
//! the reply it takes the code and keeps the target function with what it
//! needs. Here the reply's thinking (`<think>…</think>`) is dropped, the
//! fenced block holding the entry point is taken (or the longest), and the
//! sandbox harness finishes EvalPlus's sanitising with Python's own parser
//! (longest parsable span; imports, plus the definitions the entry point
//! reaches).

use crate::engine::{ChatMessage, ChatRequest};

/// EvalPlus's instruction prefix for chat models (its default, non-"perf"
/// mode), so scores compare with published EvalPlus numbers.
pub const INSTRUCTION_PREFIX: &str = "Please provide a self-contained Python script that solves the following problem in a markdown code block:";

/// Default generation budget. EvalPlus's 768 cuts thinking models off
/// mid-thought; 4096 leaves room for reasoning plus the code while fitting
/// the 10240-token bench profile with the prompt.
pub const DEFAULT_MAX_TOKENS: u32 = 4096;

/// Bumped when the prompt or extraction changes: recorded results made with
/// another version are not mixed with new ones.
pub const VERSION: u32 = 1;

/// The chat request for one problem: greedy (temperature 0).
pub fn request(prompt: &str, max_tokens: u32) -> ChatRequest {
    ChatRequest {
        messages: vec![ChatMessage::user(format!(
            "{INSTRUCTION_PREFIX}\n```python\n{}\n```",
            prompt.trim()
        ))],
        max_tokens,
        temperature: 0.0,
    }
}

/// The reply without its reasoning: `<think>…</think>` blocks removed; text
/// before a lone `</think>` (the template opened the block) removed; an
/// unclosed `<think>` (the budget ran out while thinking) leaves nothing.
pub fn strip_thinking(reply: &str) -> String {
    let mut text = reply;
    if let Some(end) = text.rfind("</think>") {
        if !text[..end].contains("<think>") {
            text = &text[end + "</think>".len()..];
        }
    }
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("<think>") {
        out.push_str(&rest[..start]);
        match rest[start..].find("</think>") {
            Some(end) => rest = &rest[start + end + "</think>".len()..],
            None => {
                rest = "";
                break;
            }
        }
    }
    out.push_str(rest);
    out
}

/// A fenced block: its language tag and body.
struct Fence<'a> {
    lang: &'a str,
    body: String,
}

fn fences(text: &str) -> (Vec<Fence<'_>>, Option<String>) {
    let mut blocks = Vec::new();
    let mut open: Option<(&str, Vec<&str>)> = None;
    for line in text.lines() {
        let trimmed = line.trim_start();
        match &mut open {
            None => {
                if let Some(tag) = trimmed.strip_prefix("```") {
                    open = Some((tag.trim(), Vec::new()));
                }
            }
            Some((lang, body)) => {
                if trimmed.starts_with("```") && trimmed.trim_end() == "```" {
                    blocks.push(Fence {
                        lang,
                        body: body.join("\n"),
                    });
                    open = None;
                } else {
                    body.push(line);
                }
            }
        }
    }
    // A block still open at the end: the budget ran out inside the code.
    let unterminated = open.map(|(_, body)| body.join("\n"));
    (blocks, unterminated)
}

/// The code to run from a reply (thinking already stripped): the first
/// fenced block defining `entry_point`, else the longest python (or
/// untagged) block, else an unterminated block, else the whole text.
pub fn extract_code(reply: &str, entry_point: &str) -> String {
    let (blocks, unterminated) = fences(reply);
    let defines = |body: &str| {
        body.lines().any(|l| {
            l.trim_start()
                .strip_prefix("def ")
                .or_else(|| l.trim_start().strip_prefix("async def "))
                .is_some_and(|rest| {
                    rest.strip_prefix(entry_point)
                        .is_some_and(|after| after.trim_start().starts_with('('))
                })
        })
    };
    let pythonish = |lang: &str| {
        let l = lang.to_ascii_lowercase();
        l.is_empty() || l.starts_with("python") || l == "py" || l == "python3"
    };
    if let Some(b) = blocks.iter().find(|b| defines(&b.body)) {
        return b.body.clone();
    }
    if let Some(u) = unterminated.as_deref().filter(|u| defines(u)) {
        return u.to_string();
    }
    if let Some(b) = blocks
        .iter()
        .filter(|b| pythonish(b.lang))
        .max_by_key(|b| b.body.len())
    {
        return b.body.clone();
    }
    if let Some(u) = unterminated {
        return u;
    }
    reply.to_string()
}

/// Thinking stripped, then the code extracted.
pub fn code_from_reply(reply: &str, entry_point: &str) -> String {
    extract_code(&strip_thinking(reply), entry_point)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_is_evalplus_shaped_and_greedy() {
        let r = request("def f(x):\n    \"\"\"doc\"\"\"\n", 100);
        assert_eq!(r.temperature, 0.0);
        assert_eq!(r.messages.len(), 1);
        assert_eq!(
            r.messages[0].content,
            format!("{INSTRUCTION_PREFIX}\n```python\ndef f(x):\n    \"\"\"doc\"\"\"\n```")
        );
    }

    #[test]
    fn thinking_is_stripped() {
        assert_eq!(strip_thinking("<think>a ```x```</think>B"), "B");
        assert_eq!(strip_thinking("reasoning</think>\nB"), "\nB");
        assert_eq!(strip_thinking("A<think>never closed"), "A");
        assert_eq!(strip_thinking("plain"), "plain");
    }

    #[test]
    fn the_block_with_the_entry_point_wins() {
        let reply = "Here:\n```python\nimport math\n```\nand\n```python\ndef helper():\n    return 1\n\ndef add(a, b):\n    return a + b\n```\n```\nprint(add(1, 2))\n```";
        assert_eq!(
            extract_code(reply, "add"),
            "def helper():\n    return 1\n\ndef add(a, b):\n    return a + b"
        );
        assert_eq!(extract_code("```py\nx = 1\n```", "add"), "x = 1");
        assert_eq!(
            extract_code("```python\ndef add(a, b):\n    return a", "add"),
            "def add(a, b):\n    return a"
        );
        assert_eq!(
            extract_code("def add(a,b): return a+b", "add"),
            "def add(a,b): return a+b"
        );
        // `add_one` is not `add`.
        assert_eq!(
            extract_code(
                "```python\ndef add_one(a):\n    pass\n```\n```text\nno\n```",
                "add"
            ),
            "def add_one(a):\n    pass"
        );
        assert_eq!(
            code_from_reply("<think>```python\ndef add(): wrong\n```</think>```python\ndef add(a, b):\n    return a + b\n```", "add"),
            "def add(a, b):\n    return a + b"
        );
    }
}
