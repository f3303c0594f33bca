#!/usr/bin/env bash
# Installs the pinned moto_server (the AWS emulator bakery's AWS tests run
# against) into a project-local virtualenv at .venv/. Idempotent: when
# .venv/bin/moto_server exists and the venv's moto is the pinned version it
# does nothing. Prints one line saying what it did.
#
# Environment:
#   PYTHON  the interpreter that creates the venv (default: python3)
#   VENV    where the venv goes (default: <repo>/.venv)
set -euo pipefail

MOTO_VERSION="5.2.5"
root="$(cd "$(dirname "$0")/.." && pwd)"
venv="${VENV:-$root/.venv}"
python="${PYTHON:-python3}"

fail() { echo "moto-venv: $*" >&2; exit 1; }

installed_version() {
  [ -x "$venv/bin/moto_server" ] && [ -x "$venv/bin/python" ] || return 1
  "$venv/bin/python" -c 'import moto; print(moto.__version__)' 2>/dev/null
}

if [ "$(installed_version || true)" = "$MOTO_VERSION" ]; then
  echo "moto-venv: moto $MOTO_VERSION already installed in $venv"
  exit 0
fi

command -v "$python" >/dev/null 2>&1 ||
  fail "$python not found: install Python 3 (apt-get install -y python3 python3-venv) or set PYTHON"

# Debian splits venv and ensurepip into python3-venv; install it when we can.
if ! "$python" -c 'import venv, ensurepip' >/dev/null 2>&1; then
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    { apt-get update -qq && apt-get install -y -qq python3-venv; } >/dev/null ||
      fail "installing python3-venv with apt-get failed: install it by hand"
  else
    fail "$python has no venv module: run apt-get install -y python3-venv as root, or set PYTHON"
  fi
fi

log="$(mktemp)"
trap 'rm -f "$log"' EXIT

if [ ! -x "$venv/bin/python" ]; then
  "$python" -m venv "$venv" >"$log" 2>&1 ||
    { cat "$log" >&2; fail "creating the virtualenv $venv failed (output above): remove it and retry"; }
fi

"$venv/bin/python" -m pip install --quiet --disable-pip-version-check "moto[server]==$MOTO_VERSION" >"$log" 2>&1 ||
  { cat "$log" >&2; fail "installing moto[server]==$MOTO_VERSION into $venv failed (output above): check access to PyPI, or remove $venv and retry"; }

got="$(installed_version || true)"
[ "$got" = "$MOTO_VERSION" ] ||
  fail "after installing, $venv has moto '${got:-none}' instead of $MOTO_VERSION: remove $venv and retry"

echo "moto-venv: installed moto[server]==$MOTO_VERSION into $venv"
