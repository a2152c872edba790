#!/usr/bin/env bash
# Side-by-side anchor for scripts/bench.sh: Terraform (AWS provider) applying and destroying
# only the network tier of ../shared/bench/terraform/main.tf (VPC through security groups,
# the same resources infra's network tier creates) on a fresh, warmed moto.
#   scripts/bench_terraform_network.sh [--runs N]
# Needs the `terraform` binary and provider plugins in TF_PLUGIN_DIR (default
# /opt/tf-plugins), as ../shared/bench/README.md describes; exits 1 naming what is missing.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
anchor="$root/../shared/bench/terraform"
runs=3
[ "${1:-}" = "--runs" ] && runs=$2
TF_PLUGIN_DIR="${TF_PLUGIN_DIR:-/opt/tf-plugins}"
command -v terraform >/dev/null || { echo "terraform is not installed" >&2; exit 1; }
[ -d "$TF_PLUGIN_DIR" ] || { echo "no provider plugins in $TF_PLUGIN_DIR" >&2; exit 1; }
[ -f "$anchor/main.tf" ] || { echo "no Terraform anchor at $anchor" >&2; exit 1; }

venv=$("$root/scripts/moto-venv.sh")
work=$(mktemp -d)
moto="" proxy=""
trap 'kill $moto $proxy 2>/dev/null; rm -rf "$work"' EXIT
export CHECKPOINT_DISABLE=1 TF_IN_AUTOMATION=1 TF_INPUT=0 TF_CLI_CONFIG_FILE="$work/empty.tfrc"
: > "$TF_CLI_CONFIG_FILE"

# The network section: from the first resource up to the SSM parameters.
awk '/^resource "aws_ssm_parameter"/{exit} {print}' "$anchor/main.tf" > "$work/main.tf"
cp "$anchor/variables.tf" "$work/"
cd "$work"
terraform init -input=false -no-color -plugin-dir="$TF_PLUGIN_DIR" >/dev/null

proxy_py="$root/../shared/bench/awsproxy.py"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
t() { local s e; s=$(date +%s%N); "$@" >/dev/null 2>&1; e=$(date +%s%N); echo $(( (e - s) / 1000000 )); }
# Requests since the last call, from the counting proxy (then reset).
requests() { python3 -c 'import json,sys,urllib.request; print(json.load(urllib.request.urlopen(sys.argv[1]))["total"])' "$endpoint/__stats?reset=1"; }
for i in $(seq "$runs"); do
  port=$(free_port)
  MOTO_IAM_LOAD_MANAGED_POLICIES=true "$venv/bin/moto_server" -H 127.0.0.1 -p "$port" >/dev/null 2>&1 &
  moto=$!
  for _ in $(seq 200); do (echo >/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.05; done
  # Warm moto's lazily built EC2 backend, as bench.sh and the anchor do.
  AWS_ENDPOINT_URL="http://127.0.0.1:$port" AWS_ACCESS_KEY_ID=t AWS_SECRET_ACCESS_KEY=t AWS_REGION=us-east-1 \
    "$venv/bin/python" -c 'import boto3; boto3.client("ec2", region_name="us-east-1").describe_vpcs()'
  # Count Terraform's requests with the anchor's proxy (no added latency).
  pport=$(free_port)
  python3 "$proxy_py" --upstream "http://127.0.0.1:$port" --port "$pport" >/dev/null 2>&1 &
  proxy=$!
  for _ in $(seq 200); do (echo >/dev/tcp/127.0.0.1/$pport) 2>/dev/null && break; sleep 0.05; done
  endpoint="http://127.0.0.1:$pport"
  rm -f terraform.tfstate terraform.tfstate.backup
  requests >/dev/null
  apply=$(t terraform apply -auto-approve -no-color -var "aws_endpoint=$endpoint"); apply_n=$(requests)
  resources=$(terraform state list | wc -l)
  plan=$(t terraform plan -no-color -var "aws_endpoint=$endpoint"); plan_n=$(requests)
  destroy=$(t terraform destroy -auto-approve -no-color -var "aws_endpoint=$endpoint"); destroy_n=$(requests)
  printf 'run %d: %d resources, apply %d ms (%d requests), no-op plan %d ms (%d), destroy %d ms (%d)\n' \
    "$i" "$resources" "$apply" "$apply_n" "$plan" "$plan_n" "$destroy" "$destroy_n"
  kill $proxy $moto; wait $proxy $moto 2>/dev/null || true; moto=""
done
