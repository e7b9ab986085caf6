#!/usr/bin/env bash
# API fuzzing: schemathesis, a property-based fuzzer driven by the OpenAPI document, runs against a real
# dc-controller process (SQLite database, system PKI, an admin token) and checks that every answer is a
# status the document lists for its operation, with the documented content type and body schema, never
# a 5xx, and that a method the document does not list answers 405 with `Allow`; then that the controller
# is still up and answering.
#
#   tests/api-fuzz/run.sh [--release] [--examples N] [--seed S] [--report DIR]
#
# The fuzzer is a pinned PyPI package installed once into a venv outside the repository
# (${DC_CACHE:-$HOME/.cache/dc-rootca}/schemathesis-<version>). `--examples` is the most test cases per
# operation and phase (default 100, what CI runs); the seed makes a run repeatable (default: a fixed one, so CI is
# deterministic; pass another to explore). The binaries come from `cargo build` of the workspace.
set -euo pipefail

SCHEMATHESIS_VERSION=4.32.5
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
CACHE=${DC_CACHE:-$HOME/.cache/dc-rootca}
VENV=$CACHE/schemathesis-$SCHEMATHESIS_VERSION
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}

profile=debug
examples=100
seed=14
report=
while [ $# -gt 0 ]; do
  case $1 in
    --release) profile=release ;;
    --examples) examples=$2; shift ;;
    --seed) seed=$2; shift ;;
    --report) report=$2; shift ;;
    *) echo "usage: $0 [--release] [--examples N] [--seed S] [--report DIR]" >&2; exit 2 ;;
  esac
  shift
done

log() { echo "api-fuzz: $*" >&2; }

# The fuzzer, once per version. The marker is written last, so an interrupted install is redone.
if [ ! -e "$VENV/.installed" ]; then
  log "installing schemathesis $SCHEMATHESIS_VERSION into $VENV"
  rm -rf "$VENV"
  mkdir -p "$CACHE"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
  touch "$VENV/.installed"
fi

cargo_flags=(--quiet -p dc-controller -p dc-certs --bins)
[ "$profile" = release ] && cargo_flags+=(--release)
(cd "$ROOT" && cargo build "${cargo_flags[@]}")
BIN=$TARGET/$profile

work=$(mktemp -d "${TMPDIR:-/tmp}/dc-api-fuzz.XXXXXX")
controller=
cleanup() {
  if [ -n "$controller" ] && kill -0 "$controller" 2>/dev/null; then
    kill "$controller" 2>/dev/null || true
    wait "$controller" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

"$BIN/dc-certs" init --out "$work/pki" >/dev/null
token() { od -An -N24 -tx1 /dev/urandom | tr -d ' \n'; }
admin=$(token)
reader=$(token)
cat >"$work/controller.toml" <<EOF
database = "$work/controller.sqlite"
ready_file = "$work/ready.json"
[api]
listen = "127.0.0.1:0"
[agents]
listen = "127.0.0.1:0"
[pki]
ca = "$work/pki/ca.crt"
cert = "$work/pki/controller.crt"
key = "$work/pki/controller.key"
[[auth.tokens]]
token = "$admin"
role = "admin"
[[auth.tokens]]
token = "$reader"
role = "reader"
EOF

RUST_LOG=${RUST_LOG:-warn} "$BIN/dc-controller" --config "$work/controller.toml" \
  >"$work/controller.log" 2>&1 &
controller=$!
for _ in $(seq 300); do
  [ -s "$work/ready.json" ] && break
  kill -0 "$controller" 2>/dev/null || { cat "$work/controller.log" >&2; log "the controller did not start"; exit 1; }
  sleep 0.1 # another process: no event to await but its ready file
done
api=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["api"])' "$work/ready.json")
log "controller $controller at http://$api; $examples examples per operation, seed $seed"

args=(run "http://$api/v1.0/openapi.json" --url "http://$api"
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,unsupported_method,allow_header_conformance
  --header "X-Auth-Token: $admin"
  # The event stream answers 200 and then never ends while the controller runs: every case would only
  # wait for its timeout. tests/tests/events.rs covers it (and the 401) against a real fleet.
  --exclude-path /v1.0/sw-update-strategy/events
  --max-examples "$examples" --seed "$seed"
  --workers 2 --request-timeout 20
  --report ndjson --report-ndjson-path "$work/events.ndjson")
status=0
# From the work directory: schemathesis leaves a cache directory where it runs.
(cd "$work" && "$VENV/bin/schemathesis" "${args[@]}") || status=$?

# Every answer was checked above; the controller must also have survived them.
alive=yes
kill -0 "$controller" 2>/dev/null || alive=no
health=$(python3 - "$api" <<'EOF' || true
import sys, urllib.request
print(urllib.request.urlopen(f"http://{sys.argv[1]}/health", timeout=10).status)
EOF
)
# The figures: requests sent, their statuses, and the checks that failed.
python3 - "$work/events.ndjson" <<'EOF' || true
import collections, json, sys
requests, statuses, failed, bad_cases = 0, collections.Counter(), collections.Counter(), 0
for line in open(sys.argv[1]):
    event = json.loads(line).get("ScenarioFinished")
    if not event:
        continue
    recorder = event.get("recorder", {})
    for interaction in recorder.get("interactions", {}).values():
        requests += 1
        statuses[(interaction.get("response") or {}).get("status_code", "none")] += 1
    for checks in recorder.get("checks", {}).values():
        names = [c.get("name") for c in checks if c.get("status") != "success"]
        failed.update(names)
        bad_cases += bool(names)
codes = ", ".join(f"{k}: {v}" for k, v in sorted(statuses.items(), key=str))
print(f"api-fuzz: {requests} requests ({codes}); failed checks: {dict(failed) or 'none'}", file=sys.stderr)
# The plain closing line CI reads: requests answered as documented, and those that were not.
print(f"api-fuzz: {requests - bad_cases} passed, {bad_cases} failed")
EOF
if [ -n "$report" ]; then
  mkdir -p "$report"
  cp "$work/events.ndjson" "$work/controller.log" "$report/" 2>/dev/null || true
fi
if [ "$alive" != yes ] || [ "$health" != 200 ]; then
  tail -50 "$work/controller.log" >&2
  log "the controller did not survive the run (alive: $alive, /health: ${health:-no answer})"
  exit 1
fi
if [ "$status" != 0 ]; then
  tail -20 "$work/controller.log" >&2
  log "schemathesis found failures (exit $status)"
  exit "$status"
fi
log "passed: the controller answered every case as documented and is still up"
