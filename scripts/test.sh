#!/usr/bin/env bash
# The test command: installs what the tests need (moto, schemathesis and
# openapi-spec-validator into .venv; PostgreSQL, buildah and docker-registry if missing), then
# runs every test of the workspace against real moto, PostgreSQL, buildah and registry, then
# the books-api fuzz stage.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

venv=$(scripts/moto-venv.sh)
export MOTO_SERVER="$venv/bin/moto_server"
# schemathesis (the fuzz stage below) and openapi-spec-validator (books-api's OpenAPI tests).
scripts/fuzz_api.sh --venv >/dev/null
export OPENAPI_SPEC_VALIDATOR="$venv/bin/openapi-spec-validator"

# books-api's tests start throwaway PostgreSQL clusters (initdb, pg_ctl) and make a
# throwaway CA with the openssl command; `infra graph`'s tests read its DOT back with
# Graphviz's `dot` (package graphviz); tests/image.rs builds and pushes with buildah
# (daemonless) into a docker-registry on loopback.
need_pg=false; need_openssl=false; need_dot=false; need_buildah=false; need_registry=false
command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need_pg=true
command -v openssl >/dev/null 2>&1 || need_openssl=true
command -v dot >/dev/null 2>&1 || need_dot=true
command -v buildah >/dev/null 2>&1 || need_buildah=true
command -v docker-registry >/dev/null 2>&1 || need_registry=true
if $need_pg || $need_openssl || $need_dot || $need_buildah || $need_registry; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    pkgs=(); $need_pg && pkgs+=(postgresql); $need_openssl && pkgs+=(openssl); $need_dot && pkgs+=(graphviz)
    $need_buildah && pkgs+=(buildah); $need_registry && pkgs+=(docker-registry)
    echo "installing ${pkgs[*]}" >&2
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${pkgs[@]}" >&2
  else
    echo "missing: PostgreSQL binaries (package postgresql), openssl, Graphviz (package graphviz), buildah and/or docker-registry; install them first" >&2
    exit 1
  fi
fi

# Debug info off for dependencies (see Cargo.toml); tests share one build.
cargo test --workspace --locked "$@"
# The engine tests again with the state in S3 (a versioned bucket in each test's moto).
INFRA_TEST_STATE_BACKEND=s3 cargo test --workspace --locked --test network "$@"
# books-api fuzzed from its own OpenAPI document: schemathesis against the binary the tests
# above ran, on a throwaway PostgreSQL (FUZZ_SEED / FUZZ_MAX_EXAMPLES change seed and budget).
target_dir=$(cargo metadata --locked --format-version 1 --no-deps | "$venv/bin/python" -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
BOOKS_API_BIN="$target_dir/debug/books-api" scripts/fuzz_api.sh
