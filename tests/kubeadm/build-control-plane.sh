#!/usr/bin/env bash
# Builds kube-apiserver, kube-controller-manager and kube-scheduler from Debian's `kubernetes` source
# package (bullseye's 1.20, the last Debian shipped) with Debian's Go, once per machine, into a cache
# outside the repository keyed by the version; installs etcd (Debian's etcd-server) beside them.
# Prints the cache's bin directory on its last line. Needs root for apt-get when something is missing.
#
# The source is the package's own upstream tarball with its vendored dependencies, built by the tree's
# own `make WHAT=...` (which first generates the OpenAPI definitions the tarball does not carry):
# nothing is fetched from outside the package registries.
set -euo pipefail

VERSION=1.20.2
DEBIAN_VERSION=1.20.5+really1.20.2
CACHE="${DC_ROOTCA_CACHE:-$HOME/.cache/dc-rootca}/kubernetes-$VERSION"
BIN="$CACHE/bin"
COMPONENTS=(kube-apiserver kube-controller-manager kube-scheduler)

have_all() {
  for c in "${COMPONENTS[@]}"; do [ -x "$BIN/$c" ] || return 1; done
  command -v etcd >/dev/null 2>&1
}

if have_all; then
  echo "$BIN"
  exit 0
fi

# One build per machine: a concurrent caller (another test of the tier) waits here for the first one's
# build, then finds the binaries.
mkdir -p "$(dirname "$CACHE")"
exec 9>"$CACHE.lock"
flock 9
if have_all; then
  echo "$BIN"
  exit 0
fi

missing=()
command -v go >/dev/null 2>&1 || missing+=(golang-go)
command -v etcd >/dev/null 2>&1 || missing+=(etcd-server)
command -v dpkg-source >/dev/null 2>&1 || missing+=(dpkg-dev)
command -v rsync >/dev/null 2>&1 || missing+=(rsync)
command -v make >/dev/null 2>&1 || missing+=(make)
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "build-control-plane: needs ${missing[*]} (apt-get install as root)" >&2
    exit 1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

started=$(date +%s)
work=$(mktemp -d "${TMPDIR:-/tmp}/dc-rootca-kubernetes.XXXXXX")
trap 'rm -rf "$work"' EXIT
cd "$work"
# A private source list: bullseye's source package, without touching the machine's apt configuration.
mkdir -p lists/partial
echo "deb-src http://deb.debian.org/debian bullseye main" > sources.list
apt_src=(-o Dir::Etc::sourcelist="$work/sources.list" -o Dir::Etc::sourceparts=- -o Dir::State::Lists="$work/lists")
apt-get "${apt_src[@]}" update -qq
# Only the upstream tarball is needed (Debian's patches touch packaging, not these three commands).
apt-get "${apt_src[@]}" source --download-only "kubernetes=$DEBIAN_VERSION-1" >/dev/null 2>&1 || true
tarball="kubernetes_$DEBIAN_VERSION.orig.tar.gz"
if [ ! -f "$tarball" ]; then
  echo "build-control-plane: apt-get source kubernetes=$DEBIAN_VERSION-1 brought no $tarball" >&2
  exit 1
fi
tar xzf "$tarball"
(
  cd "kubernetes-$VERSION"
  export GOCACHE="$work/gocache" GOFLAGS=
  what=""
  for c in "${COMPONENTS[@]}"; do what="$what cmd/$c"; done
  make WHAT="${what# }" GOLDFLAGS="-s -w" >&2
)
mkdir -p "$BIN.partial"
for c in "${COMPONENTS[@]}"; do cp "kubernetes-$VERSION/_output/bin/$c" "$BIN.partial/"; done
rm -rf "$BIN"
mv "$BIN.partial" "$BIN"
echo "build-control-plane: built Kubernetes $VERSION in $(( $(date +%s) - started )) s" >&2
echo "$BIN"
