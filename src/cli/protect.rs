//! `oomguard protect`. (Not implemented yet.)

/// Arguments of `oomguard protect`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Arguments (not implemented yet)
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub rest: Vec<String>,
}

pub fn run(_args: Args) -> anyhow::Result<u8> {
    anyhow::bail!("`oomguard protect` is not implemented yet")
}

/// Arguments of `oomguard unprotect`.
#[derive(clap::Args, Debug)]
pub struct UnprotectArgs {
    /// Arguments (not implemented yet)
    pub rest: Vec<String>,
}

pub fn run_unprotect(_args: UnprotectArgs) -> anyhow::Result<u8> {
    anyhow::bail!("`oomguard unprotect` is not implemented yet")
}
