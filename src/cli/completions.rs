//! `onboard completions <shell>` and `onboard man`: generated from the
//! same clap definition the parser uses, so neither can fall behind a
//! command or an option.

use super::{error, EXIT_FAILED, EXIT_OK};
use clap::{Args, CommandFactory};
use std::io::Write;

#[derive(Args, Debug)]
pub struct CompletionsArgs {
    /// The shell to complete in.
    #[arg(value_enum)]
    shell: clap_complete::Shell,
}

#[derive(Args, Debug)]
pub struct ManArgs {}

/// Prints the completion script; the shell's own start-up file sources it
/// (bash: `source <(onboard completions bash)`).
pub fn completions(args: &CompletionsArgs) -> i32 {
    let mut cmd = super::Cli::command();
    let mut out = Vec::new();
    clap_complete::generate(args.shell, &mut cmd, "onboard", &mut out);
    emit(&out)
}

/// Prints onboard(1) in roff (`onboard man > onboard.1`, or
/// `onboard man | man -l -`).
pub fn man(_args: &ManArgs) -> i32 {
    let cmd = super::Cli::command();
    let mut out = Vec::new();
    if let Err(e) = clap_mangen::Man::new(cmd).render(&mut out) {
        error(&format!("cannot render the man page: {e}"));
        return EXIT_FAILED;
    }
    emit(&out)
}

/// Writes to stdout; a closed pipe (`| head`) is no failure worth a panic.
fn emit(bytes: &[u8]) -> i32 {
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(bytes).and_then(|()| stdout.flush()) {
        Ok(()) => EXIT_OK,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => EXIT_OK,
        Err(e) => {
            error(&format!("cannot write to stdout: {e}"));
            EXIT_FAILED
        }
    }
}
