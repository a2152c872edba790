#!/usr/bin/env bash
# Runs infra's main job against a local moto emulator, from nothing:
# start moto, `infra init`, `infra up`, `infra status`, `infra outputs`, then `infra down`.
# Pass --keep to leave the stack and moto running (the script prints how to tear down).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
keep=false
[ "${1:-}" = "--keep" ] && keep=true

venv=$("$root/scripts/moto-venv.sh")
# The same build as the tests (`cargo test --workspace`), so nothing is compiled twice.
(cd "$root" && cargo build --quiet --workspace)
infra="${CARGO_TARGET_DIR:-$root/target}/debug/infra"

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
MOTO_IAM_LOAD_MANAGED_POLICIES=true "$venv/bin/moto_server" -H 127.0.0.1 -p "$port" >/dev/null 2>&1 &
moto=$!
$keep || trap 'kill $moto 2>/dev/null' EXIT
for _ in $(seq 100); do (echo >/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.1; done

export AWS_ENDPOINT_URL="http://127.0.0.1:$port" AWS_REGION=us-east-1
export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_EC2_METADATA_DISABLED=true

work="$root/.quickstart"
rm -rf "$work" && mkdir -p "$work" && cd "$work"
run() { echo; echo "\$ infra $*"; "$infra" "$@"; }
run init --stack books
# moto's ECR has no registry (nothing to push to) and its ECS services never finish a
# rollout: a prebuilt image, and no rollout wait. Against AWS keep both defaults.
sed -i 's|^source_code_path = .*|image = "public.ecr.aws/docker/library/books-api:1.0"|; s|^wait_for_rollout = true|wait_for_rollout = false|' infra.toml
run up
run status
run outputs
run plan || true
if $keep; then
  echo
  echo "moto (pid $moto) is still running at $AWS_ENDPOINT_URL. To tear down:"
  echo "  cd $work && AWS_ENDPOINT_URL=$AWS_ENDPOINT_URL AWS_REGION=us-east-1 AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing $infra down --yes && kill $moto"
else
  run down --yes
fi
