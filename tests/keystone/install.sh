#!/usr/bin/env bash
# The real OpenStack Keystone the Keystone-auth tests run against: the `keystone` package from PyPI (pinned)
# and gunicorn to serve its WSGI application, installed once per version into a venv outside the repository,
# ${DC_CACHE:-$HOME/.cache/dc-rootca}/keystone-<version>. Prints the venv's path. The marker file is written
# last, so an interrupted install is redone. Needs Python >= 3.11 with venv and pip, and PyPI.
set -euo pipefail

KEYSTONE_VERSION=30.0.0
GUNICORN_VERSION=23.0.0
CACHE=${DC_CACHE:-$HOME/.cache/dc-rootca}
VENV=$CACHE/keystone-$KEYSTONE_VERSION

if [ ! -e "$VENV/.installed" ]; then
  echo "keystone: installing keystone $KEYSTONE_VERSION and gunicorn $GUNICORN_VERSION into $VENV" >&2
  rm -rf "$VENV"
  mkdir -p "$CACHE"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check \
    "keystone==$KEYSTONE_VERSION" "gunicorn==$GUNICORN_VERSION" >&2
  touch "$VENV/.installed"
fi
echo "$VENV"
