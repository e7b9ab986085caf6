//! Records the git commit the controller is built from, for `/metrics`' `dc_rootca_build_info`:
//! `DC_ROOTCA_GIT_COMMIT` when the packager sets it, else `git rev-parse HEAD`, else `unknown` (a build
//! from a source tarball).

#![allow(
    clippy::print_stdout,
    reason = "cargo reads a build script's instructions on its stdout"
)]

use std::path::Path;
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?.trim().to_owned();
    (out.status.success() && !text.is_empty()).then_some(text)
}

/// Rebuilt when HEAD moves: HEAD itself, and the branch it names (a loose ref, else packed-refs). Only
/// files that exist are named, since cargo reruns the script on every build for a missing one.
fn watch_head() {
    let branch = git(&["symbolic-ref", "-q", "HEAD"])
        .and_then(|r| git(&["rev-parse", "--git-path", &r]))
        .filter(|p| Path::new(p).exists())
        .or_else(|| git(&["rev-parse", "--git-path", "packed-refs"]));
    for path in [git(&["rev-parse", "--git-path", "HEAD"]), branch]
        .into_iter()
        .flatten()
        .filter(|p| Path::new(p).exists())
    {
        println!("cargo:rerun-if-changed={path}");
    }
}

fn main() {
    println!("cargo:rerun-if-env-changed=DC_ROOTCA_GIT_COMMIT");
    let commit = std::env::var("DC_ROOTCA_GIT_COMMIT")
        .ok()
        .filter(|c| !c.is_empty())
        .or_else(|| {
            watch_head();
            git(&["rev-parse", "HEAD"])
        })
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=DC_ROOTCA_GIT_COMMIT={commit}");
}
