#!/usr/bin/env bash
# Times infra against a fresh moto: fresh `up`, no-op `up`, `status`, `down`, each
# repeated (default 5 rounds) and reported as min/median/max wall time with the AWS call
# counts (mutating / read) from infra's own call log.
#   scripts/bench.sh [--runs N] [--latency-ms MS]
# --latency-ms puts ../shared/bench/awsproxy.py (if present) between infra and moto to add
# a per-request round trip, as the Terraform anchor was also measured.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
runs=5
latency=0
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) runs=$2; shift 2 ;;
    --latency-ms) latency=$2; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 1 ;;
  esac
done

venv=$("$root/scripts/moto-venv.sh")
# The dev build the tests use (dependencies unoptimised): a release build of the SDK
# takes far longer to compile than it saves here, where moto's own time dominates.
(cd "$root" && cargo build --quiet --workspace)
infra="${CARGO_TARGET_DIR:-$root/target}/debug/infra"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 200); do (echo >/dev/tcp/127.0.0.1/$1) 2>/dev/null && return; sleep 0.05; done; echo "port $1 never opened" >&2; exit 1; }

port=$(free_port)
MOTO_IAM_LOAD_MANAGED_POLICIES=true "$venv/bin/moto_server" -H 127.0.0.1 -p "$port" >/dev/null 2>&1 &
pids=($!)
trap 'kill "${pids[@]}" 2>/dev/null' EXIT
wait_port "$port"
endpoint="http://127.0.0.1:$port"
# Warm moto's lazily built EC2 backend (its first call takes seconds), as the Terraform
# anchor does, so every round measures infra rather than emulator start-up.
AWS_ENDPOINT_URL="$endpoint" AWS_ACCESS_KEY_ID=t AWS_SECRET_ACCESS_KEY=t AWS_REGION=us-east-1 \
  "$venv/bin/python" -c 'import boto3; boto3.client("ec2", region_name="us-east-1").describe_vpcs()'
if [ "$latency" != 0 ]; then
  proxy="$root/../shared/bench/awsproxy.py"
  [ -f "$proxy" ] || { echo "--latency-ms needs $proxy" >&2; exit 1; }
  pport=$(free_port)
  python3 "$proxy" --upstream "$endpoint" --port "$pport" --latency-ms "$latency" >/dev/null 2>&1 &
  pids+=($!)
  wait_port "$pport"
  endpoint="http://127.0.0.1:$pport"
fi

export AWS_ENDPOINT_URL="$endpoint" AWS_REGION=us-east-1
export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_EC2_METADATA_DISABLED=true
work=$(mktemp -d)
trap 'kill "${pids[@]}" 2>/dev/null; rm -rf "$work"' EXIT
cd "$work"
"$infra" init --stack bench 2>/dev/null
# moto has no image registry and never completes an ECS rollout: a prebuilt image URI,
# and no rollout wait (as the tests run it).
sed -i 's|^source_code_path = .*|image = "public.ecr.aws/docker/library/books-api:1.0"|; s|^wait_for_rollout = true|wait_for_rollout = false|' infra.toml

results="$work/results.tsv"
measure() { # phase, command...
  local phase=$1; shift
  local log="$work/calls.jsonl"
  rm -f "$log"
  local start end
  start=$(date +%s%N)
  INFRA_CALL_LOG="$log" "$@" >/dev/null 2>"$work/stderr" || { local rc=$?; [ "$phase" = status ] && [ $rc = 2 ] || { cat "$work/stderr" >&2; exit 1; }; }
  end=$(date +%s%N)
  local mut reads
  mut=$(grep -c '"mutating":true' "$log" || true)
  reads=$(grep -c '"mutating":false' "$log" || true)
  printf '%s\t%s\t%s\t%s\n' "$phase" "$((end - start))" "$mut" "$reads" >> "$results"
}

# One unrecorded round first: moto builds some of its state lazily on first use.
"$infra" up >/dev/null 2>&1 && "$infra" down --yes >/dev/null 2>&1
for i in $(seq "$runs"); do
  measure "up (fresh)" "$infra" up
  measure "up (no-op)" "$infra" up
  measure "status" "$infra" status
  measure "down" "$infra" down --yes
done

python3 - "$results" "$runs" "$latency" <<'PY'
import sys, statistics, collections
rows = collections.OrderedDict()
for line in open(sys.argv[1]):
    phase, secs, mut, reads = line.rstrip("\n").split("\t")
    rows.setdefault(phase, []).append((int(secs) / 1e9, int(mut), int(reads)))
print(f"infra on moto, network + data + compute tiers, {sys.argv[2]} runs, {sys.argv[3]} ms added latency per request")
print(f"{'phase':<12} {'min s':>7} {'median s':>9} {'max s':>7} {'mutating':>9} {'read':>6}")
for phase, v in rows.items():
    t = [x[0] for x in v]
    mut = statistics.median(x[1] for x in v)
    rd = statistics.median(x[2] for x in v)
    print(f"{phase:<12} {min(t):7.3f} {statistics.median(t):9.3f} {max(t):7.3f} {mut:9.0f} {rd:6.0f}")
PY
