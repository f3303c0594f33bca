#!/usr/bin/env bash
# Installs the pinned validators bakery's SBOM and provenance tests run
# against into the project-local virtualenv (.venv/, shared with
# moto-venv.sh): spdx-tools (its pyspdxtools CLI validates SPDX 2.3
# documents) and in-toto-attestation (the in-toto attestation spec's own
# Python bindings, which parse and validate statements). Idempotent: when
# both are at the pinned versions it does nothing. Prints one line saying
# what it did.
#
# Environment:
#   PYTHON  the interpreter that creates the venv (default: python3)
#   VENV    where the venv goes (default: <repo>/.venv)
set -euo pipefail

SPDX_TOOLS_VERSION="0.8.5"
IN_TOTO_ATTESTATION_VERSION="0.9.3"
root="$(cd "$(dirname "$0")/.." && pwd)"
venv="${VENV:-$root/.venv}"
python="${PYTHON:-python3}"

fail() { echo "sbom-venv: $*" >&2; exit 1; }

installed() {
  [ -x "$venv/bin/pyspdxtools" ] && [ -x "$venv/bin/python" ] || return 1
  "$venv/bin/python" - <<'PY' 2>/dev/null
from importlib.metadata import version
print(version("spdx-tools"), version("in-toto-attestation"))
PY
}

want="$SPDX_TOOLS_VERSION $IN_TOTO_ATTESTATION_VERSION"
if [ "$(installed || true)" = "$want" ]; then
  echo "sbom-venv: spdx-tools $SPDX_TOOLS_VERSION and in-toto-attestation $IN_TOTO_ATTESTATION_VERSION already installed in $venv"
  exit 0
fi

command -v "$python" >/dev/null 2>&1 ||
  fail "$python not found: install Python 3 (apt-get install -y python3 python3-venv) or set PYTHON"

log="$(mktemp)"
trap 'rm -f "$log"' EXIT

if [ ! -x "$venv/bin/python" ]; then
  "$python" -m venv "$venv" >"$log" 2>&1 ||
    { cat "$log" >&2; fail "creating the virtualenv $venv failed (output above): run scripts/moto-venv.sh first, or remove $venv and retry"; }
fi

"$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
  "spdx-tools==$SPDX_TOOLS_VERSION" "in-toto-attestation==$IN_TOTO_ATTESTATION_VERSION" >"$log" 2>&1 ||
  { cat "$log" >&2; fail "installing spdx-tools==$SPDX_TOOLS_VERSION and in-toto-attestation==$IN_TOTO_ATTESTATION_VERSION into $venv failed (output above): check access to PyPI, or remove $venv and retry"; }

got="$(installed || true)"
[ "$got" = "$want" ] ||
  fail "after installing, $venv has '${got:-none}' instead of spdx-tools/in-toto-attestation $want: remove $venv and retry"

echo "sbom-venv: installed spdx-tools==$SPDX_TOOLS_VERSION and in-toto-attestation==$IN_TOTO_ATTESTATION_VERSION into $venv"
