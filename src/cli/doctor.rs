//! `oomguard doctor`. (Not implemented yet.)

/// Arguments of `oomguard doctor`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Arguments (not implemented yet)
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub rest: Vec<String>,
}

pub fn run(_args: Args) -> anyhow::Result<u8> {
    anyhow::bail!("`oomguard doctor` is not implemented yet")
}

