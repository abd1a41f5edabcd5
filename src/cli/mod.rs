//! One module per command. Each defines its clap `Args` and a `run` returning the
//! process exit code. Commands gather data from `host`, call `model`, and render.

pub mod daemon;
pub mod doctor;
pub mod explain;
pub mod history;
pub mod logs;
pub mod protect;
pub mod ps;
pub mod render;
pub mod run;
pub mod stop;
pub mod survey;
pub mod top;

/// Print an error chain on stderr as `oomguard: error: cause: cause...`.
pub fn report_error(e: &anyhow::Error) {
    let mut msg = format!("oomguard: error: {e}");
    for cause in e.chain().skip(1) {
        msg.push_str(&format!(": {cause}"));
    }
    eprintln!("{msg}");
}
