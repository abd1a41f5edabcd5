use std::process::ExitCode;

use clap::{Parser, Subcommand};
use oomguard::cli;

/// Keep long-running jobs alive through memory crunches, and say exactly what happened
/// when one dies.
#[derive(Parser)]
#[command(name = "oomguard", version, about, long_about = None, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    cmd: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start a job shielded from every OOM killer on this machine, output logged to a file
    Run(cli::run::Args),
    /// Shield a job that is already running
    Protect(cli::protect::Args),
    /// Remove the shield from a process
    Unprotect(cli::protect::UnprotectArgs),
    /// List the jobs oomguard started or protects
    Ps(cli::ps::Args),
    /// Show (or follow) a job's output log
    Logs(cli::logs::Args),
    /// Stop a job: SIGTERM, then SIGKILL after a grace period
    Stop(cli::stop::Args),
    /// Who dies next: every process in the order an OOM killer would choose it
    Top(cli::top::Args),
    /// Why a process would (or would not) be chosen, step by step
    Explain(cli::explain::Args),
    /// Every OOM kill on this machine, by any killer (alias: why)
    #[command(visible_alias = "why")]
    History(cli::history::Args),
    /// Which OOM killers are armed here, and how close a process is to each
    Doctor(cli::doctor::Args),
    /// The root service that lets users shield their own jobs
    Daemon(cli::daemon::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.cmd {
        Command::Run(a) => cli::run::run(a),
        Command::Protect(a) => cli::protect::run(a),
        Command::Unprotect(a) => cli::protect::run_unprotect(a),
        Command::Ps(a) => cli::ps::run(a),
        Command::Logs(a) => cli::logs::run(a),
        Command::Stop(a) => cli::stop::run(a),
        Command::Top(a) => cli::top::run(a),
        Command::Explain(a) => cli::explain::run(a),
        Command::History(a) => cli::history::run(a),
        Command::Doctor(a) => cli::doctor::run(a),
        Command::Daemon(a) => cli::daemon::run(a),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            cli::report_error(&e);
            ExitCode::from(1)
        }
    }
}
