#!/usr/bin/env bash
# Puts @elastic/ecs (the official ECS field definitions, EcsFlat), at the version pinned in
# .ci/ecs-schema/package-lock.json with its integrity hash, in .tools/ecs-schema. The ECS export tests
# validate every exported event against it. Needs node and npm. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."

install_dir="$PWD/.tools/ecs-schema"
pinned="$(python3 -c 'import json; print(json.load(open(".ci/ecs-schema/package.json"))["dependencies"]["@elastic/ecs"])')"
installed="$install_dir/node_modules/@elastic/ecs/package.json"

if [ -f "$installed" ] && [ "$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['version'])" "$installed")" = "$pinned" ]; then
    echo "@elastic/ecs already installed: $pinned"
    exit 0
fi
command -v npm >/dev/null || { echo "install-ecs-schema.sh: npm is needed" >&2; exit 1; }

mkdir -p "$install_dir"
cp .ci/ecs-schema/package.json .ci/ecs-schema/package-lock.json "$install_dir/"
# From inside the directory: with --prefix, npm 11 reads a different project root for some paths and
# reports the lock file out of sync.
(cd "$install_dir" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
echo "installed @elastic/ecs $pinned in $install_dir"
