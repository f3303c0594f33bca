#!/usr/bin/env bash
# make demo: bake an AMI against a local moto server, so a newcomer can
# watch a machine-image bake (and its skip on the second run) without an
# AWS account. Everything runs on 127.0.0.1 and is gone when it ends.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
bakery="$root/bin/bakery"

"$root/scripts/moto-venv.sh" >/dev/null
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
log="$(mktemp)"
home="$(mktemp -d)"
env -u AWS_PROFILE "$root/.venv/bin/moto_server" -H 127.0.0.1 -p "$port" >"$log" 2>&1 &
moto=$!
trap 'kill $moto 2>/dev/null; rm -rf "$log" "$home"' EXIT
for _ in $(seq 1 100); do
  (echo >"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
  sleep 0.1
done

# Fake credentials for moto; bakery talks to it through BAKERY_AWS_ENDPOINT.
export AWS_ACCESS_KEY_ID=demo AWS_SECRET_ACCESS_KEY=demo AWS_REGION=us-east-1
export AWS_EC2_METADATA_DISABLED=true AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null
export BAKERY_AWS_ENDPOINT="http://127.0.0.1:$port" BAKERY_HOME="$home"

step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; "$@"; }
echo "moto_server on 127.0.0.1:$port (a local AWS emulator: no account, no cost)"
step "$bakery" validate recipes/base-ami.bake.hcl
step "$bakery" bake recipes/base-ami.bake.hcl
step "$bakery" bake recipes/base-ami.bake.hcl
step "$bakery" -q --output json bake -var version=1.1.0 recipes/base-ami.bake.hcl
step "$bakery" sweep --region us-east-1 --region eu-west-1
