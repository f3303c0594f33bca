#!/usr/bin/env bash
# make demo: bake an AMI against a local moto server, so a newcomer can
# watch a machine-image bake (and its skip on the second run), its
# promotion to prod, the fleet of prod launched, replaced and rolled
# back, and retire's plan of what stays and why, without an AWS account.
# It ends with the dashboard (bakery serve) of what it made, served for
# DEMO_SERVE_SECONDS (60 by default) on 127.0.0.1.
# Everything runs on 127.0.0.1 and is gone when it ends.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
bakery="${BAKERY:-$root/bin/bakery}" # BAKERY: another build (tests)
venv="${VENV:-$root/.venv}"           # VENV: where moto-venv.sh put moto

VENV="$venv" "$root/scripts/moto-venv.sh" >/dev/null
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
log="$(mktemp)"
home="$(mktemp -d)"
env -u AWS_PROFILE "$venv/bin/moto_server" -H 127.0.0.1 -p "$port" >"$log" 2>&1 &
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

# Commands are shown in bold on a terminal; in a log or a pipe (make demo
# | tee demo.log) they are plain text, as bakery's own output is.
bold="" plain=""
if [ -t 1 ] && [ -z "${NO_COLOR:-}" ]; then
  bold=$'\033[1m' plain=$'\033[0m'
fi

# step shows a command (arguments with spaces quoted, as you would type them),
# then runs it.
step() {
  local shown="" a
  for a in "$@"; do
    case "$a" in *" "*) a="\"$a\"" ;; esac
    shown="$shown${shown:+ }$a"
  done
  printf '\n%s$ %s%s\n' "$bold" "$shown" "$plain"
  "$@"
}
echo "moto_server on 127.0.0.1:$port (a local AWS emulator: no account, no cost)"
step "$bakery" validate recipes/base-ami.bake.hcl
step "$bakery" bake recipes/base-ami.bake.hcl
step "$bakery" bake recipes/base-ami.bake.hcl
step "$bakery" -q --output json bake -var version=1.1.0 recipes/base-ami.bake.hcl
step "$bakery" sweep --region us-east-1 --region eu-west-1

# A release manager: a session of the release-managers role (assumed in
# moto, which needs no such role), so that bakery sees another verified AWS
# identity than the demo's own. as_release_manager runs a command as them.
read -r rm_key rm_secret rm_token < <("$venv/bin/python" -c '
import sys, boto3
c = boto3.client("sts", endpoint_url=sys.argv[1], region_name="us-east-1").assume_role(
    RoleArn="arn:aws:iam::123456789012:role/release-managers", RoleSessionName="carol")["Credentials"]
print(c["AccessKeyId"], c["SecretAccessKey"], c["SessionToken"])' "$BAKERY_AWS_ENDPOINT")
as_release_manager() { AWS_ACCESS_KEY_ID="$rm_key" AWS_SECRET_ACCESS_KEY="$rm_secret" AWS_SESSION_TOKEN="$rm_token" "$@"; }

# Promotion moves the same AMI through the stages (dev → staging → prod):
# it tags, copies and shares; it never rebakes. The verbs find the recipe by
# name in ./recipes.
step "$bakery" promote base@1.0.0 --to dev
# Refused on purpose: 1.1.0 was never in staging, and prod needs an approval.
# `|| true` keeps `set -e` from ending the demo on the expected refusal.
step "$bakery" promote base@1.1.0 --to prod || true
step "$bakery" promote base@1.0.0 --to staging
# prod needs someone else's approval (four eyes): the release manager's.
step as_release_manager "$bakery" approve base@1.0.0 --for prod --reason "reviewed the staging soak"
step "$bakery" promote base@1.0.0 --to prod
step "$bakery" promote base@1.0.0 --to prod
step "$bakery" status base
step "$bakery" history base

# Launch runs the image of prod as a fresh Auto Scaling group (the recipe's
# fleet "prod" block), health-gated. Launching 1.1.0 then replaces it
# red/black: 1.0.0's group is disabled and kept; rollback brings it back.
step "$bakery" launch base --stage prod
step "$bakery" promote base@1.1.0 --to dev
step "$bakery" promote base@1.1.0 --to staging
step as_release_manager "$bakery" approve base@1.1.0 --for prod
step "$bakery" promote base@1.1.0 --to prod
step "$bakery" launch base --stage prod
step "$bakery" fleets base
step "$bakery" rollback base --stage prod
step "$bakery" fleets base
step "$bakery" history base

# Retire plans, per version, keep or remove with every reason (the recipe's
# retain block; here the defaults: the newest 5, one previous per stage):
# nothing is removed here, and the plan says why each version stays.
step "$bakery" retire base
step "$bakery" retire base --yes

# The dashboard of all of it: the stages board with the prod fleet and its
# health, each version's lineage, the history and the outdated recipes,
# read-only on loopback (port 8080 when it is free). It serves for
# DEMO_SERVE_SECONDS seconds; Ctrl-C ends it sooner.
serve_seconds="${DEMO_SERVE_SECONDS:-60}"
dport="$(python3 -c 'import socket
s = socket.socket()
try:
    s.bind(("127.0.0.1", 8080))
except OSError:
    s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])')"
printf '\n%s$ %s%s\n' "$bold" "$bakery serve --addr 127.0.0.1:$dport" "$plain"
echo "open http://127.0.0.1:$dport/ in a browser: it is served for ${serve_seconds}s (DEMO_SERVE_SECONDS), Ctrl-C stops it sooner"
# timeout ends it as Ctrl-C does (SIGINT: a graceful stop) and exits 124.
timeout --signal=INT "$serve_seconds" "$bakery" serve --addr "127.0.0.1:$dport" || [ $? -eq 124 ]
