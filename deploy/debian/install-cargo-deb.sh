#!/usr/bin/env bash
# Installs cargo-deb (pinned) once per machine, into a cache outside the repository keyed by its version,
# and prints the path of the cargo-deb binary on its last line. From crates.io, with `cargo install`.
set -euo pipefail

VERSION=3.8.0
ROOT="${DC_ROOTCA_CACHE:-$HOME/.cache/dc-rootca}/cargo-deb-$VERSION"
BIN="$ROOT/bin/cargo-deb"

if [ ! -x "$BIN" ]; then
  mkdir -p "$(dirname "$ROOT")"
  # One install per machine: a concurrent caller waits for the first one's, then finds it.
  exec 9>"$ROOT.lock"
  flock 9
  if [ ! -x "$BIN" ]; then
    # Its own temporary target directory: never the workspace's, whose lock a running `cargo test`
    # may hold.
    env -u CARGO_TARGET_DIR cargo install cargo-deb --version "$VERSION" --locked --quiet --root "$ROOT" >&2
  fi
fi
echo "$BIN"
