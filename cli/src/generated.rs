//! What is generated from the CLI's own clap definition, so it never drifts from it: shell completions
//! (`dcmanager completion bash|zsh|fish`, for operators and the package) and the man pages (the hidden
//! `dcmanager man --out-dir DIR`, one page per command, which the package installs).

use std::path::{Path, PathBuf};

/// The shells completions are generated for.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
}

impl From<Shell> for clap_complete::Shell {
    fn from(shell: Shell) -> Self {
        match shell {
            Shell::Bash => Self::Bash,
            Shell::Zsh => Self::Zsh,
            Shell::Fish => Self::Fish,
        }
    }
}

#[derive(clap::Args)]
pub struct CompletionArgs {
    /// The shell to complete for. bash: `source <(dcmanager completion bash)`; the package installs all
    /// three where each shell looks.
    #[arg(value_enum)]
    shell: Shell,
}

#[derive(clap::Args)]
pub struct ManArgs {
    /// Directory to write dcmanager.1 and one page per subcommand (dcmanager-subcloud-list.1, ...) into.
    #[arg(long, value_name = "DIR")]
    out_dir: PathBuf,
}

/// Writes the completion script for `args.shell` to `out`.
pub fn completion(args: &CompletionArgs, mut cmd: clap::Command, out: &mut dyn std::io::Write) {
    let name = cmd.get_name().to_owned();
    clap_complete::generate(clap_complete::Shell::from(args.shell), &mut cmd, name, out);
}

/// Writes one man page per (visible) command into `args.out_dir`, created when missing.
pub fn man_pages(args: &ManArgs, cmd: clap::Command) -> std::io::Result<()> {
    write_man_pages(&args.out_dir, cmd)
}

fn write_man_pages(dir: &Path, cmd: clap::Command) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    clap_mangen::generate_to(cmd, dir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory as _;

    #[test]
    fn every_shell_completes_the_commands_and_their_options() {
        for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
            let mut out = Vec::new();
            completion(&CompletionArgs { shell }, crate::Cli::command(), &mut out);
            let script = String::from_utf8(out).unwrap();
            for word in [
                "kube-rootca-update-strategy",
                "subcloud",
                "max-parallel-subclouds",
            ] {
                assert!(script.contains(word), "{shell:?} lacks {word}");
            }
        }
    }

    #[test]
    fn a_man_page_per_command_and_none_for_the_hidden_generator() {
        let dir = tempfile::tempdir().unwrap();
        write_man_pages(dir.path(), crate::Cli::command()).unwrap();
        for page in [
            "dcmanager.1",
            "dcmanager-subcloud-list.1",
            "dcmanager-kube-rootca-update-strategy-create.1",
            "dcmanager-completion.1",
        ] {
            let text = std::fs::read_to_string(dir.path().join(page)).unwrap();
            assert!(text.starts_with(".ie"), "{page} is roff: {text:.40}");
        }
        assert!(!dir.path().join("dcmanager-man.1").exists());
    }
}
