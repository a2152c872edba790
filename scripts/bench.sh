#!/usr/bin/env bash
# Times infra against a fresh moto: fresh `up`, no-op `up`, `status`, `down`, each
# repeated (default 5 rounds) and reported as min/median/max wall time with the AWS call
# counts (mutating / read) from infra's own call log and the state writes infra reports.
#   scripts/bench.sh [--runs N] [--latency-ms MS] [--state local|s3] [--integration public|private] [--release]
# --state s3 measures the S3 state backend (a versioned bucket in the same moto) beside the
# local one, alternating rounds so both see the same machine load, and prints the ratio.
# --latency-ms puts ../shared/bench/awsproxy.py (if present) between infra and moto to add
# a per-request round trip, as the Terraform anchor was also measured.
# --integration private measures the stack with the VPC link to an internal NLB.
# --release measures the release build (what `cargo install` gives a user) instead of the
# dev build; the first one compiles the SDK crates optimised, which takes a while.
# --realistic [--scale X] puts the tests' realistic-AWS proxy (examples/realistic_proxy.rs,
# every behaviour of REALAWS.md, durations times X, default 1/40) between infra and moto
# and times one fresh `up` and one `down` per integration (--integration to pick one),
# each beside the critical path of the configured durations.
# --from-source measures `up` with `source_code_path` (buildah and a local docker-registry
# standing in for ECR's registry, as the tests run them) beside a prebuilt `image`: a no-op
# `up` on an unchanged context against one on a prebuilt image (alternating rounds), and an
# `up` after one changed file, its build and its push reported separately. The context is a
# copy of this workspace's books-api context (.dockerignore applied), so the hash covers the
# real files; its Dockerfile is `FROM scratch` + `COPY . /src`, since base images cannot be
# pulled here.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
runs=5
latency=0
backends=local
integration=public
profile=debug
realistic=0
scale=1/40
integrations=""
from_source=false
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) runs=$2; shift 2 ;;
    --latency-ms) latency=$2; shift 2 ;;
    --state)
      case "$2" in local) backends=local ;; s3) backends="local s3" ;; *) echo "--state takes local or s3" >&2; exit 1 ;; esac
      shift 2 ;;
    --integration)
      case "$2" in public|private) integration=$2; integrations=$2 ;; *) echo "--integration takes public or private" >&2; exit 1 ;; esac
      shift 2 ;;
    --realistic) realistic=1; shift ;;
    --scale) scale=$2; shift 2 ;;
    --release) profile=release; shift ;;
    --from-source) from_source=true; shift ;;
    *) echo "unknown argument $1" >&2; exit 1 ;;
  esac
done

venv=$("$root/scripts/moto-venv.sh")
# By default the dev build the tests use (dependencies unoptimised, already built).
if [ "$profile" = release ]; then
  (cd "$root" && cargo build --quiet --release -p infra)
else
  (cd "$root" && cargo build --quiet --workspace)
fi
# Where cargo really put the build (it may map CARGO_TARGET_DIR elsewhere).
target=$(cd "$root" && cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
infra="$target/$profile/infra"
if [ "$realistic" = 1 ]; then
  if [ "$profile" = release ]; then
    (cd "$root" && cargo build --quiet --release --example realistic_proxy)
  else
    (cd "$root" && cargo build --quiet --example realistic_proxy)
  fi
  realistic_proxy="$target/$profile/examples/realistic_proxy"
fi

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
  "$venv/bin/python" -c '
import boto3
boto3.client("ec2", region_name="us-east-1").describe_vpcs()
s3 = boto3.client("s3", region_name="us-east-1")
s3.create_bucket(Bucket="bench-state")
s3.put_bucket_versioning(Bucket="bench-state", VersioningConfiguration={"Status": "Enabled"})'
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

if [ "$realistic" = 1 ]; then
  # One proxy per integration (its own simulated clock and memory of the account), one
  # stack name each (so the second up does not meet the first's bucket name being released).
  printf '%s\n' "infra through the realistic-AWS proxy, every behaviour, durations x $scale, warm moto ($profile build)"
  # moto builds each service's backend on its first call (seconds for RDS, ECS, ELB): one
  # unrecorded up and down of the whole stack on plain moto first, so neither integration
  # measured below pays for it (the first one did: 1.3-1.4x instead of 1.1x).
  warm="$work/warm"; mkdir -p "$warm"
  (cd "$warm" && "$infra" init --stack warm >/dev/null 2>&1 \
    && sed -i 's|^source_code_path = .*|image = "public.ecr.aws/docker/library/books-api:1.0"|; s|^wait_for_rollout = true|wait_for_rollout = false|' infra.toml \
    && AWS_ENDPOINT_URL="$endpoint" "$infra" up >/dev/null 2>&1 && AWS_ENDPOINT_URL="$endpoint" "$infra" down --yes >/dev/null 2>&1) \
    || { echo "the warm-up round on plain moto failed" >&2; exit 1; }
  printf '%-12s %-6s %8s %11s %6s  %s\n' integration phase "wall s" "critical s" ratio "critical chain (configured durations)"
  for integ in ${integrations:-public private}; do
    dir="$work/realistic-$integ"; mkdir -p "$dir"
    "$realistic_proxy" --upstream "$endpoint" --scale "$scale" --integration "$integ" > "$dir/proxy.out" 2>&1 &
    pids+=($!)
    for _ in $(seq 200); do grep -q '^critical down' "$dir/proxy.out" 2>/dev/null && break; sleep 0.05; done
    purl=$(sed -n 's/^url //p' "$dir/proxy.out")
    [ -n "$purl" ] || { cat "$dir/proxy.out" >&2; exit 1; }
    (cd "$dir" && "$infra" init --stack "bench-$integ" >/dev/null 2>&1)
    # A prebuilt image (moto has no registry); rollouts complete under the profile, so up waits for them.
    sed -i 's|^source_code_path = .*|image = "public.ecr.aws/docker/library/books-api:1.0"|; s|^integration = "[a-z]*"|integration = "'"$integ"'"|' "$dir/infra.toml"
    for phase in up down; do
      args=(up); [ "$phase" = down ] && args=(down --yes)
      start=$(date +%s%N)
      if ! (cd "$dir" && AWS_ENDPOINT_URL="$purl" INFRA_CALL_LOG="$dir/calls-$phase.jsonl" "$infra" "${args[@]}" >"$dir/$phase.out" 2>&1); then
        echo "$integ $phase did not converge the first time:" >&2; tail -n 20 "$dir/$phase.out" >&2
        printf '%-12s %-6s %8s\n' "$integ" "$phase" FAILED
        continue
      fi
      end=$(date +%s%N)
      line=$(grep "^critical $phase " "$dir/proxy.out")
      crit=$(echo "$line" | awk '{print $3}'); chain=$(echo "$line" | cut -d' ' -f4-)
      printf '%-12s %-6s %8.1f %11.1f %6.2f  %s\n' "$integ" "$phase" "$(echo "($end - $start) / 1000000000" | bc -l)" "$crit" \
        "$(echo "($end - $start) / 1000000000 / $crit" | bc -l)" "$chain"
    done
    sed -n 's/^chain /    chain /p' "$dir/proxy.out"
    cache=$(sed -n 's/^critical up_with_cache //p' "$dir/proxy.out" | awk '{print $1}')
    echo "  ($integ: up incl. the stage cache nothing waits for: $cache s; mutating calls up $(grep -c '"mutating":true' "$dir/calls-up.jsonl" || true), down $(grep -c '"mutating":true' "$dir/calls-down.jsonl" || true))"
    echo "  fired: $(python3 -c 'import json,sys,urllib.request; d=json.load(urllib.request.urlopen(sys.argv[1]+"/__realistic/fired")); print(", ".join(f"{k} {v}" for k,v in sorted(d["fired"].items())))' "$purl")"
  done
  exit 0
fi
for b in $backends; do
  mkdir -p "$work/$b"
  if [ "$b" = s3 ]; then
    (cd "$work/$b" && "$infra" init --stack bench --state s3://bench-state/infra/ 2>/dev/null)
  else
    (cd "$work/$b" && "$infra" init --stack bench 2>/dev/null)
  fi
  # moto has no image registry and never completes an ECS rollout: a prebuilt image URI,
  # and no rollout wait (as the tests run it).
  sed -i 's|^source_code_path = .*|image = "public.ecr.aws/docker/library/books-api:1.0"|; s|^wait_for_rollout = true|wait_for_rollout = false|; s|^integration = "[a-z]*"|integration = "'"$integration"'"|' "$work/$b/infra.toml"
done

if $from_source; then
  for tool in buildah docker-registry; do
    command -v "$tool" >/dev/null || { echo "--from-source needs $tool (Debian package; scripts/test.sh installs it as root)" >&2; exit 1; }
  done
  reg=$(free_port)
  mkdir -p "$work/registry"
  printf 'version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: %s\nhttp:\n  addr: 127.0.0.1:%s\n' "$work/registry/data" "$reg" > "$work/registry/config.yml"
  docker-registry serve "$work/registry/config.yml" >/dev/null 2>&1 &
  pids+=($!)
  wait_port "$reg"
  # moto's ECR host name, pushed into the local registry with standard settings only.
  printf '[[registry]]\nlocation = "123456789012.dkr.ecr.us-east-1.amazonaws.com"\ninsecure = true\n' > "$work/registry/registries.conf"
  printf '[storage]\ndriver = "vfs"\ngraphroot = "%s/graph"\nrunroot = "%s/run"\n' "$work/registry" "$work/registry" > "$work/registry/storage.conf"
  echo '{}' > "$work/registry/auth.json"
  export HTTP_PROXY="http://127.0.0.1:$reg" HTTPS_PROXY="http://127.0.0.1:$reg" NO_PROXY=127.0.0.1,localhost
  export CONTAINERS_REGISTRIES_CONF="$work/registry/registries.conf" CONTAINERS_STORAGE_CONF="$work/registry/storage.conf"
  export REGISTRY_AUTH_FILE="$work/registry/auth.json" BUILDAH_ISOLATION=chroot

  mkdir -p "$work/prebuilt" "$work/source"
  (cd "$work/prebuilt" && "$infra" init --stack bench-pre 2>/dev/null)
  sed -i 's|^source_code_path = .*|image = "public.ecr.aws/docker/library/books-api:1.0"|; s|^wait_for_rollout = true|wait_for_rollout = false|' "$work/prebuilt/infra.toml"
  (cd "$work/source" && "$infra" init --stack bench-src 2>/dev/null)
  sed -i 's|^image_builder = .*|image_builder = "buildah"|; s|^wait_for_rollout = true|wait_for_rollout = false|' "$work/source/infra.toml"
  (cd "$root" && git ls-files -z -- Cargo.toml Cargo.lock .dockerignore src api | xargs -0 cp --parents -t "$work/source")
  printf 'FROM scratch\nCOPY . /src\n' > "$work/source/api/Dockerfile"
  changed="$work/source/api/src/main.rs"

  rows="$work/source.tsv"
  run_up() { # project, label
    local start end
    rm -f "$work/calls.jsonl"
    start=$(date +%s%N)
    (cd "$work/$1" && INFRA_CALL_LOG="$work/calls.jsonl" "$infra" up >/dev/null 2>"$work/stderr") || { cat "$work/stderr" >&2; exit 1; }
    end=$(date +%s%N)
    local built pushed mut
    built=$(sed -n 's/.* built in \([0-9.]*\)s.*/\1/p' "$work/stderr" | tail -n1)
    pushed=$(sed -n 's/.* pushed in \([0-9.]*\)s.*/\1/p' "$work/stderr" | tail -n1)
    mut=$(grep -c '"mutating":true' "$work/calls.jsonl" || true)
    printf '%s\t%s\t%s\t%s\t%s\n' "$2" "$((end - start))" "${built:--}" "${pushed:--}" "$mut" >> "$rows"
  }
  (cd "$work/prebuilt" && "$infra" up >/dev/null 2>&1)
  (cd "$work/source" && "$infra" up >/dev/null 2>"$work/stderr") || { cat "$work/stderr" >&2; exit 1; }
  for i in $(seq "$runs"); do
    run_up prebuilt "up (no-op), prebuilt image"
    run_up source "up (no-op), unchanged context"
  done
  for i in $(seq "$runs"); do
    echo "// bench edit $i" >> "$changed"
    run_up source "up, one changed file"
  done
  files=$(cd "$work/source" && find Cargo.toml Cargo.lock src api -type f | wc -l)
  python3 - "$rows" "$runs" "$files" <<'PY'
import sys, statistics, collections
rows = collections.OrderedDict()
for line in open(sys.argv[1]):
    label, ns, built, pushed, mut = line.rstrip("\n").split("\t")
    rows.setdefault(label, []).append((int(ns) / 1e9, built, pushed, int(mut)))
print(f"infra up on moto, {sys.argv[2]} runs each; context: this workspace's books-api context ({sys.argv[3]} files), buildah + docker-registry")
print(f"{'phase':<32} {'min s':>7} {'median s':>9} {'max s':>7} {'build s':>8} {'push s':>7} {'mutating':>9}")
med = {}
for label, v in rows.items():
    t = [x[0] for x in v]
    med[label] = statistics.median(t)
    def m(i):
        xs = [float(x[i]) for x in v if x[i] != "-"]
        return f"{statistics.median(xs):.3f}" if xs else "-"
    print(f"{label:<32} {min(t):7.3f} {med[label]:9.3f} {max(t):7.3f} {m(1):>8} {m(2):>7} {statistics.median(x[3] for x in v):9.0f}")
a, b = med.get("up (no-op), unchanged context"), med.get("up (no-op), prebuilt image")
if a is not None and b is not None:
    print(f"unchanged context vs prebuilt image, median: {a - b:+.3f} s (goal: at most +0.100 s)")
PY
  exit 0
fi

results="$work/results.tsv"
measure() { # backend, phase, command...
  local backend=$1 phase=$2; shift 2
  local log="$work/calls.jsonl"
  rm -f "$log"
  local start end
  start=$(date +%s%N)
  (cd "$work/$backend" && INFRA_CALL_LOG="$log" "$@" >/dev/null 2>"$work/stderr") || { local rc=$?; [ "$phase" = status ] && [ $rc = 2 ] || { cat "$work/stderr" >&2; exit 1; }; }
  end=$(date +%s%N)
  local mut reads writes apigw
  mut=$(grep -c '"mutating":true' "$log" || true)
  reads=$(grep -c '"mutating":false' "$log" || true)
  # API Gateway's control plane is the one AWS throttles hardest: counted on its own.
  apigw=$(grep -c '"service":"API Gateway"' "$log" || true)
  # up and down report "state: N writes to ..."; status writes nothing.
  writes=$(sed -n 's/.*state: \([0-9]*\) writes for \([0-9]*\) changes.*/\1\/\2/p' "$work/stderr" | tail -n1)
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$backend" "$phase" "$((end - start))" "$mut" "$reads" "${writes:-0/0}" "$apigw" >> "$results"
}

# One unrecorded round first: moto builds some of its state lazily on first use.
for b in $backends; do
  (cd "$work/$b" && "$infra" up >/dev/null 2>&1 && "$infra" down --yes >/dev/null 2>&1)
done
for i in $(seq "$runs"); do
  for b in $backends; do
    measure "$b" "up (fresh)" "$infra" up
    measure "$b" "up (no-op)" "$infra" up
    measure "$b" "status" "$infra" status
    measure "$b" "down" "$infra" down --yes
  done
done

python3 - "$results" "$runs" "$latency" <<'PY'
import sys, statistics, collections
rows = collections.OrderedDict()
for line in open(sys.argv[1]):
    backend, phase, secs, mut, reads, writes, apigw = line.rstrip("\n").split("\t")
    w, c = writes.split("/")
    rows.setdefault((backend, phase), []).append((int(secs) / 1e9, int(mut), int(reads), int(w), int(c), int(apigw)))
print(f"infra on moto, the whole stack, {sys.argv[2]} runs, {sys.argv[3]} ms added latency per request")
print(f"{'state':<6} {'phase':<12} {'min s':>7} {'median s':>9} {'max s':>7} {'mutating':>9} {'read':>6} {'API GW':>7} {'state writes/changes':>21}")
medians = {}
for (backend, phase), v in rows.items():
    t = [x[0] for x in v]
    medians[(backend, phase)] = statistics.median(t)
    mut, rd, wr, ch, ag = (statistics.median(x[i] for x in v) for i in (1, 2, 3, 4, 5))
    print(f"{backend:<6} {phase:<12} {min(t):7.3f} {statistics.median(t):9.3f} {max(t):7.3f} {mut:9.0f} {rd:6.0f} {ag:7.0f} {f'{wr:.0f}/{ch:.0f}':>21}")
if any(b == "s3" for b, _ in rows):
    print("S3 state vs local, median wall time:")
    for (backend, phase), m in medians.items():
        if backend == "s3":
            print(f"  {phase:<12} {m / medians[('local', phase)] * 100 - 100:+.0f} %")
PY
