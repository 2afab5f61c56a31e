//! `ingot __generate-assets DIR`: the man pages (`man/ingot.1`, `man/ingot-build.1`, … one per
//! verb, from the clap definitions) and the bash, zsh and fish completions
//! (`completions/ingot.bash`, `_ingot`, `ingot.fish`) that the Debian package ships.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use clap_complete::Shell;

/// Write `DIR/man/*.1` and `DIR/completions/*` for `cmd` (hidden verbs left out).
pub fn generate(cmd: clap::Command, dir: &Path) -> anyhow::Result<ExitCode> {
    let man = dir.join("man");
    std::fs::create_dir_all(&man).with_context(|| format!("{}", man.display()))?;
    clap_mangen::generate_to(cmd.clone(), &man)
        .with_context(|| format!("{}: writing man pages", man.display()))?;
    let completions = dir.join("completions");
    std::fs::create_dir_all(&completions).with_context(|| format!("{}", completions.display()))?;
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        let mut cmd = cmd.clone();
        let path = clap_complete::generate_to(shell, &mut cmd, "ingot", &completions)
            .with_context(|| format!("{}: writing {shell} completions", completions.display()))?;
        println!("{}", path.display());
    }
    for entry in std::fs::read_dir(&man)? {
        println!("{}", entry?.path().display());
    }
    Ok(ExitCode::SUCCESS)
}
