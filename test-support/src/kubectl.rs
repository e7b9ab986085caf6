//! Runs the real `kubectl` against a kubeconfig, for tests that check a served API the way operators
//! reach it. A missing kubectl is an error, never a skipped test.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Why kubectl could not run.
#[derive(Debug, thiserror::Error)]
pub enum KubectlError {
    #[error("kubectl not found on PATH: install kubernetes-client (`.ci/run` does)")]
    Missing,
    #[error("cannot run {path}: {source}")]
    Run {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Runs `kubectl --kubeconfig <kubeconfig> <args>` and returns its output (whatever its exit status).
/// The discovery cache goes next to the kubeconfig, so tests never share or leave one in `$HOME`.
pub fn kubectl(kubeconfig: &Path, args: &[&str]) -> Result<Output, KubectlError> {
    let path = find_on_path("kubectl").ok_or(KubectlError::Missing)?;
    let cache = kubeconfig
        .parent()
        .unwrap_or(Path::new("."))
        .join(".kube-cache");
    Command::new(&path)
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .arg("--cache-dir")
        .arg(cache)
        .arg("--request-timeout=30s")
        .args(args)
        .output()
        .map_err(|source| KubectlError::Run { path, source })
}

fn find_on_path(program: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_kubectl_says_how_to_install_it() {
        assert!(find_on_path("surely-no-such-program-here").is_none());
        assert_eq!(
            KubectlError::Missing.to_string(),
            "kubectl not found on PATH: install kubernetes-client (`.ci/run` does)"
        );
    }
}
