//! `onboard launch <profile> [--print]` and `onboard export`.

use super::load;
use super::{error, EXIT_FAILED, EXIT_OK, EXIT_USAGE};
use crate::engine::launch::{self, Listen};
use crate::workspace::models_conf::{self, Profile};
use crate::workspace::Workspace;
use clap::{Args, ValueEnum};
use std::path::Path;

#[derive(Args, Debug)]
pub struct LaunchArgs {
    /// The profile id in models.conf.
    profile: String,
    /// Print the command line instead of running it.
    #[arg(long)]
    print: bool,
    #[arg(long)]
    host: Option<String>,
    #[arg(long)]
    port: Option<String>,
}

fn server_binary(ws: &Workspace) -> String {
    ws.config
        .engines
        .llama_server
        .clone()
        .unwrap_or_else(|| "llama-server".into())
}

fn profiles(ws: &Workspace) -> Result<Vec<Profile>, i32> {
    let path = ws.path(&ws.config.paths.models_conf);
    if !path.exists() {
        error(&format!(
            "{} does not exist yet; onboard a model first",
            path.display()
        ));
        return Err(EXIT_USAGE);
    }
    models_conf::read(&path).map(|c| c.profiles()).map_err(|e| {
        error(&e.to_string());
        EXIT_FAILED
    })
}

pub fn launch(dir: &Path, args: &LaunchArgs) -> i32 {
    let ws = match load::open_workspace(dir) {
        Ok(ws) => ws,
        Err(code) => return code,
    };
    let all = match profiles(&ws) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let Some(profile) = all.iter().find(|p| p.id == args.profile) else {
        let ids: Vec<&str> = all.iter().map(|p| p.id.as_str()).collect();
        error(&format!(
            "no profile `[{}]` in models.conf (profiles: {})",
            args.profile,
            ids.join(", ")
        ));
        return EXIT_USAGE;
    };
    let listen = Listen {
        host: args.host.clone(),
        port: args.port.clone(),
    };
    let cmd = match launch::command(profile, &server_binary(&ws), &ws.models_dir(), &listen) {
        Ok(c) => c,
        Err(e) => {
            error(&e);
            return EXIT_FAILED;
        }
    };
    if args.print {
        println!("{}", cmd.command_line());
        return EXIT_OK;
    }
    use std::os::unix::process::CommandExt;
    let err = std::process::Command::new(&cmd.program)
        .args(&cmd.args)
        .exec();
    error(&format!(
        "cannot start `{}`: {err}; install llama.cpp or set `engines.llama_server` in onboard.yaml",
        cmd.program
    ));
    EXIT_FAILED
}

#[derive(Args, Debug)]
pub struct ExportArgs {
    #[arg(long, value_enum)]
    format: ExportFormat,
    /// Only these profiles (default: all).
    #[arg(long = "profile", value_name = "ID")]
    profiles: Vec<String>,
}

#[derive(ValueEnum, Debug, Clone, Copy)]
enum ExportFormat {
    /// A llama-swap `models:` fragment (YAML).
    LlamaSwap,
    /// An INI file for `llama-server --models-preset`.
    LlamaPreset,
}

pub fn export(dir: &Path, args: &ExportArgs) -> i32 {
    let ws = match load::open_workspace(dir) {
        Ok(ws) => ws,
        Err(code) => return code,
    };
    let all = match profiles(&ws) {
        Ok(p) => p,
        Err(code) => return code,
    };
    for wanted in &args.profiles {
        if !all.iter().any(|p| &p.id == wanted) {
            error(&format!("no profile `[{wanted}]` in models.conf"));
            return EXIT_USAGE;
        }
    }
    let chosen: Vec<&Profile> = all
        .iter()
        .filter(|p| args.profiles.is_empty() || args.profiles.contains(&p.id))
        .collect();
    let mut launches = Vec::new();
    for p in chosen {
        match launch::command(p, &server_binary(&ws), &ws.models_dir(), &Listen::default()) {
            Ok(l) => launches.push((p.id.clone(), l)),
            Err(e) => {
                error(&e);
                return EXIT_FAILED;
            }
        }
    }
    print!(
        "{}",
        match args.format {
            ExportFormat::LlamaSwap => crate::engine::export::llama_swap(&launches),
            ExportFormat::LlamaPreset => crate::engine::export::llama_preset(&launches),
        }
    );
    EXIT_OK
}
