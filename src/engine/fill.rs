//! The passage every engine fills a context with: the embedded ones and
//! llama-server alike, so their prompts are the same tokens and their
//! speeds compare.

/// The passage every engine repeats to fill a context (the embedded ones
/// and llama-server alike, so their prompts are the same tokens).
pub const FILLER: &str =
    "The history of measurement is a history of agreement. Merchants, builders and \
    astronomers each needed units that others would accept, and every improvement in precision \
    came from a shared reference that anyone could check. A workstation that serves language \
    models is measured the same way: by numbers that another person can reproduce on the same \
    machine with the same file. ";

/// The question after the filler.
const FILL_QUESTION: &str = "\n\nSummarise the passage above in one sentence.";

/// How a fill of about `target` tokens splits over a passage of
/// `passage_tokens`: whole copies, then the first `rest` tokens of one.
pub fn fill_split(target: u64, passage_tokens: usize) -> (usize, usize) {
    let per = passage_tokens.max(1) as u64;
    ((target / per) as usize, (target % per) as usize)
}

/// The user message of a fill: `copies` passages, `partial` (the text of
/// the first tokens of one more), the question. Every engine sends this
/// text through the model's chat template, so the prompts are the same
/// tokens; llama.cpp (embedded and llama-server) then generates exactly the
/// requested tokens, end-of-generation ignored (mistral.rs 0.8.1 cannot).
pub fn fill_message(copies: usize, partial: &str) -> String {
    let mut text = FILLER.repeat(copies);
    text.push_str(partial);
    text.push_str(FILL_QUESTION);
    text
}
