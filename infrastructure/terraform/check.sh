#!/usr/bin/env bash
# Offline checks of the Terraform: fmt, init (provider mirror when there is one), validate, the
# mocked tests, and each environment's variable file. Leaves nothing in the tree: Terraform's
# working data goes to a temporary TF_DATA_DIR, removed on exit.
#
#   infrastructure/terraform/check.sh        (from anywhere)
#   TF_PLUGIN_DIR=/path/to/mirror check.sh   (the folder holding registry.terraform.io/)
set -euo pipefail

here="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"

terraform="${TERRAFORM:-terraform}"
plugin_dir="${TF_PLUGIN_DIR:-/opt/tf-plugins}"

if ! command -v "$terraform" >/dev/null 2>&1; then
  echo "check.sh: $terraform not found (Terraform >= 1.11 is needed; set TERRAFORM=<path>)" >&2
  exit 127
fi

data_dir="$(mktemp -d "${TMPDIR:-/tmp}/sluice-terraform.XXXXXX")"
trap 'rm -rf "$data_dir"' EXIT
export TF_DATA_DIR="$data_dir"
export TF_IN_AUTOMATION=1
export CHECKPOINT_DISABLE=1
# A CLI configuration named but missing only earns a warning on every command.
if [[ -n "${TF_CLI_CONFIG_FILE:-}" && ! -e "$TF_CLI_CONFIG_FILE" ]]; then
  export TF_CLI_CONFIG_FILE=/dev/null
fi

step() {
  local started=$SECONDS
  printf '==> %s\n' "$*"
  "$@"
  printf '    (%ss)\n' "$((SECONDS - started))"
}

step "$terraform" fmt -check -recursive -diff -no-color

# The committed lock file must already hold what init needs (-lockfile=readonly): the
# linux_amd64 h1: hash matches the mirror, the zh: hashes the registry's signed releases.
init=("$terraform" init -backend=false -input=false -no-color -lockfile=readonly)
if [[ -d "$plugin_dir/registry.terraform.io" ]]; then
  init+=("-plugin-dir=$plugin_dir")
fi
step "${init[@]}"

step "$terraform" validate -no-color
step "$terraform" test -no-color

for tfvars in env/*.tfvars; do
  step "$terraform" test -no-color -test-directory=tests/env "-var-file=$tfvars"
done

echo "Terraform checks passed."
