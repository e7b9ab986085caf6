#!/usr/bin/env bash
# The seconds-long fuzzing tier of CI: builds every cargo-fuzz target and runs each for a few seconds from
# its committed corpus, so a decoder or editor that starts to panic on the seeds (or a few mutations away
# from them) fails CI. The long runs the README records are `cargo +nightly fuzz run <target> -- -runs=N`.
#
# Needs the nightly toolchain; installs cargo-fuzz when it is missing. Without nightly it says so and
# skips, so a machine without it still runs the rest of CI. FUZZ_SECONDS sets the time per target (5).
set -euo pipefail
cd "$(dirname "$0")"

if ! cargo +nightly --version >/dev/null 2>&1; then
  echo "fuzz smoke skipped: no nightly toolchain (rustup toolchain install nightly)" >&2
  exit 0
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  cargo install --locked cargo-fuzz
fi

# cargo-fuzz keeps its build in fuzz/target; a target dir set for the main workspace must not redirect it.
unset CARGO_TARGET_DIR
seconds="${FUZZ_SECONDS:-5}"

cargo +nightly fuzz build
for target in $(cargo +nightly fuzz list); do
  # A scratch copy of the corpus: the run adds what it finds there, never to the committed seeds.
  work="$(mktemp -d)"
  cp -r "corpus/$target/." "$work/"
  echo "fuzz smoke: $target for ${seconds}s"
  status=0
  cargo +nightly fuzz run "$target" "$work" -- -max_total_time="$seconds" >"$work.log" 2>&1 || status=$?
  grep -E '^#[0-9]+[[:space:]]+DONE' "$work.log" || true
  if [ "$status" != 0 ]; then
    tail -n 60 "$work.log" >&2
    echo "fuzz smoke: $target failed (the crashing input is under fuzz/artifacts/$target)" >&2
    exit 1
  fi
  rm -rf "$work" "$work.log"
done
