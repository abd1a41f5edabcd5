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
    /// Write the man page or a shell completion script to stdout (for packagers)
    #[command(hide = true)]
    Generate {
        #[arg(value_enum)]
        what: Generated,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Generated {
    Man,
    Bash,
    Zsh,
    Fish,
}

/// The man page or a completion script, from the same clap definitions the binary parses with.
fn generate(what: Generated) -> anyhow::Result<u8> {
    use clap::CommandFactory;
    let mut cmd = Cli::command();
    let mut out = std::io::stdout().lock();
    match what {
        Generated::Man => clap_mangen::Man::new(cmd)
            .render(&mut out)
            .and_then(|()| render_man_extra(&mut out))?,
        Generated::Bash => {
            clap_complete::generate(clap_complete::Shell::Bash, &mut cmd, "oomguard", &mut out)
        }
        Generated::Zsh => {
            clap_complete::generate(clap_complete::Shell::Zsh, &mut cmd, "oomguard", &mut out)
        }
        Generated::Fish => {
            clap_complete::generate(clap_complete::Shell::Fish, &mut cmd, "oomguard", &mut out)
        }
    }
    Ok(0)
}

/// Sections clap_mangen does not write: exit status, environment, files.
fn render_man_extra(out: &mut impl std::io::Write) -> std::io::Result<()> {
    out.write_all(
        br#".SH "EXIT STATUS"
.TP
\fB0\fR
success
.TP
\fB1\fR
an error (the message on stderr names the cause and the remedy)
.TP
\fB2\fR
wrong usage (unknown option, missing argument)
.TP
\fBrun\fR
exits with the job's own status, or 128+N when a signal N ended it
.SH ENVIRONMENT
.TP
\fBNO_COLOR\fR
no colour in tables, whatever the terminal
.TP
\fBOOMGUARD_SOCKET\fR
the daemon's socket (default \fI/run/oomguard/oomguard.sock\fR)
.TP
\fBXDG_STATE_HOME\fR
where job records and logs live (\fI$XDG_STATE_HOME/oomguard\fR, default \fI~/.local/state/oomguard\fR)
.SH FILES
.TP
\fI/etc/oomguard/config.toml\fR
the daemon's policy: who may shield jobs, how many, how far
.SH "SEE ALSO"
\fBsystemd-oomd\fR(8), \fBearlyoom\fR(1), \fBproc\fR(5)
"#,
    )
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
        Command::Generate { what } => generate(what),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            cli::report_error(&e);
            ExitCode::from(1)
        }
    }
}
