#!/usr/bin/env bash
# Puts @bitnami/readme-generator-for-helm, at the version pinned in .ci/readme-generator/package-lock.json
# (with every dependency's integrity hash), in .tools/bin/readme-generator. Needs node and npm.
# Idempotent: does nothing when the installed version is the pinned one.
set -euo pipefail
cd "$(dirname "$0")/.."

bin_dir="$PWD/.tools/bin"
install_dir="$PWD/.tools/readme-generator"
pinned="$(python3 -c 'import json; print(json.load(open(".ci/readme-generator/package.json"))["dependencies"]["@bitnami/readme-generator-for-helm"])')"

if [ -x "$bin_dir/readme-generator" ] && [ "$("$bin_dir/readme-generator" --version 2>/dev/null)" = "Version: $pinned" ]; then
    echo "readme-generator already installed: $pinned"
    exit 0
fi
command -v npm >/dev/null || { echo "install-readme-generator.sh: npm is needed (Debian: apt-get install npm)" >&2; exit 1; }

mkdir -p "$install_dir" "$bin_dir"
cp .ci/readme-generator/package.json .ci/readme-generator/package-lock.json "$install_dir/"
# npm ci installs exactly the lock file's tree and fails if it does not match package.json.
npm ci --prefix "$install_dir" --ignore-scripts --no-audit --no-fund --loglevel=error
ln -sf "$install_dir/node_modules/.bin/readme-generator" "$bin_dir/readme-generator"
echo "installed readme-generator $("$bin_dir/readme-generator" --version)"
