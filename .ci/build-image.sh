#!/usr/bin/env bash
# Builds the image the Helm chart runs, from the Dockerfile as users build it, tagged
# localhost/ccs-exporter:<version of pyproject.toml>, with docker when its daemon answers and podman otherwise.
# Prints the image's size and layers at the end.
#
#   bash .ci/build-image.sh                  # base made from Debian's packages, dependencies from a wheelhouse
#   bash .ci/build-image.sh --base pinned    # the Dockerfile's own base (python:3.11-slim by digest; needs Docker Hub)
#   bash .ci/build-image.sh --base IMAGE     # any base image with Python 3.11, venv, groupadd and useradd
#   bash .ci/build-image.sh --index          # pip inside the build reaches a package index (no wheelhouse)
#   bash .ci/build-image.sh --prepare-only   # only the base and the wheelhouse (CI makes them while tests run)
#
# Why a Debian base: where no container registry can be reached (CI), mmdebstrap makes a Debian bookworm root
# filesystem (python3 3.11, python3-venv, passwd, ca-certificates, netbase, tzdata: what python:3.11-slim has
# that the image uses) from Debian's packages, and the engine imports it. It is cached by content: its tag is
# a digest of this recipe and of the suites' InRelease files, so it is made again only when Debian publishes
# updates or the recipe changes.
# Why a wheelhouse: the build container may not reach a package index; the host downloads the wheels of
# constraints.txt's versions for the image's Python (cp311, manylinux x86_64) and the build installs from them
# with --no-index, with no network at all. The venv is the same as one installed from the index.
#
# Podman runs with the configuration this script writes to .tools/podman/ (CONTAINERS_CONF and
# CONTAINERS_STORAGE_CONF; /etc is left alone): runc, cgroupfs, no default ulimits (they fail inside
# unprivileged machines), the overlay storage driver where the kernel has it (vfs otherwise, much slower), in a
# storage of its own so it never clashes with other podman storage. The tests (tests/test_image.py) use the
# same files: .tools/image/built.env says which engine and image.
#
# Exit status: 0 built; 1 the build (or the base) failed, with the failing step and the end of its log;
# 2 bad usage or a missing tool (one line saying what to install).
set -euo pipefail
cd "$(dirname "$0")/.."
repo="$PWD"

die_usage() { echo "build-image.sh: $*" >&2; exit 2; }

base_choice="debian"
use_index=false
prepare_only=false
engine=""
while [ $# -gt 0 ]; do
    case "$1" in
        --base) [ $# -ge 2 ] || die_usage "--base needs a value: debian, pinned or an image reference"
            base_choice="$2"; shift 2 ;;
        --base=*) base_choice="${1#--base=}"; shift ;;
        --index) use_index=true; shift ;;
        --prepare-only) prepare_only=true; shift ;;
        --engine) [ $# -ge 2 ] || die_usage "--engine needs a value: docker or podman"; engine="$2"; shift 2 ;;
        --engine=*) engine="${1#--engine=}"; shift ;;
        -h | --help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) die_usage "unknown argument: $1 (see --help)" ;;
    esac
done
[ -n "$base_choice" ] || die_usage "--base needs a value: debian, pinned or an image reference"

version="$(sed -n 's/^version = "\(.*\)"$/\1/p' pyproject.toml | head -n 1)"
[ -n "$version" ] || die_usage "no version = \"...\" line in pyproject.toml"
image="localhost/ccs-exporter:$version"
state_dir="$repo/.tools/image"
mkdir -p "$state_dir"
log="$state_dir/build.log"
started=$SECONDS

# Phase timer: prints "  <what>: N s" when a phase ends.
phase_start=$SECONDS
phase_done() { echo "  $1: $((SECONDS - phase_start)) s"; phase_start=$SECONDS; }

# Shows why a logged command failed without the wall: the step it was at and the last lines.
show_failure() {
    local what="$1" logfile="$2" step
    step="$(grep -E '^(\[[0-9]+/[0-9]+\] )?STEP [0-9]+/[0-9]+: |^#[0-9]+ \[[^]]+\] ' "$logfile" | tail -n 1 || true)"
    echo "build-image.sh: $what failed${step:+ at: $(printf '%s' "$step" | cut -c1-200)}" >&2
    echo "--- last lines of $logfile ---" >&2
    grep -v -E '^\s*$' "$logfile" | tail -n 15 | cut -c1-240 >&2
    echo "--- full log: $logfile" >&2
}

# --- the engine ----------------------------------------------------------------------------------------------
podman_setup() {
    local conf_dir="$repo/.tools/podman" driver graph_parent run_parent
    mkdir -p "$conf_dir"
    driver="${CCS_IMAGE_STORAGE_DRIVER:-}"
    if [ -z "$driver" ]; then
        # overlay needs the kernel's overlay filesystem and a storage that is not itself on overlay.
        driver=vfs
        if grep -qw overlay /proc/filesystems 2>/dev/null || modprobe overlay 2>/dev/null; then
            case "$(stat -f -c %T /var/lib 2>/dev/null || echo unknown)" in
                overlayfs | overlay | unknown) ;;
                *) driver=overlay ;;
            esac
        fi
    fi
    if [ "$(id -u)" = 0 ]; then
        graph_parent=/var/lib/containers
        run_parent=/run/containers
    else
        graph_parent="${XDG_DATA_HOME:-$HOME/.local/share}/containers"
        run_parent="${XDG_RUNTIME_DIR:-/tmp/containers-$(id -u)}/containers"
    fi
    cat >"$conf_dir/containers.conf" <<'EOF'
# Written by .ci/build-image.sh; read through CONTAINERS_CONF.
[containers]
default_ulimits = []

[engine]
cgroup_manager = "cgroupfs"
runtime = "runc"
EOF
    cat >"$conf_dir/storage.conf" <<EOF
# Written by .ci/build-image.sh; read through CONTAINERS_STORAGE_CONF.
[storage]
driver = "$driver"
runroot = "$run_parent/ccs-exporter-$driver"
graphroot = "$graph_parent/ccs-exporter-$driver"
EOF
    export CONTAINERS_CONF="$conf_dir/containers.conf" CONTAINERS_STORAGE_CONF="$conf_dir/storage.conf"
}

docker_answers() { command -v docker >/dev/null && docker info >/dev/null 2>&1; }

case "$engine" in
    "")
        if docker_answers; then
            engine=docker
        elif command -v podman >/dev/null; then
            engine=podman
        elif command -v docker >/dev/null; then
            die_usage "docker is installed but its daemon does not answer, and podman is missing: start the Docker daemon, or install podman (apt-get install podman runc)"
        else
            die_usage "no container engine: install podman (apt-get install podman runc) or Docker"
        fi ;;
    docker) docker_answers || die_usage "docker: not installed or its daemon does not answer (docker info fails)" ;;
    podman) command -v podman >/dev/null || die_usage "podman is not installed: apt-get install podman runc" ;;
    *) die_usage "--engine must be docker or podman, not $engine" ;;
esac
if [ "$engine" = podman ]; then
    command -v runc >/dev/null || die_usage "runc is missing (podman runs containers with it here): apt-get install runc"
    podman_setup
fi
echo "engine: $engine$([ "$engine" = podman ] && sed -n 's/^driver = "\(.*\)"/ (storage driver \1)/p' "$CONTAINERS_STORAGE_CONF")"

# --- the base image ------------------------------------------------------------------------------------------
debian_base() {
    command -v mmdebstrap >/dev/null || die_usage "mmdebstrap is missing (it makes the Debian base): apt-get install mmdebstrap"
    local mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
    local security_mirror="${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}"
    local suite=bookworm
    local packages="python3,python3-venv,python-is-python3,passwd,ca-certificates,netbase,tzdata"
    local -a sources=(
        "deb $mirror $suite main"
        "deb $mirror $suite-updates main"
        "deb $security_mirror $suite-security main"
    )
    local -a options=(
        --variant=essential --include="$packages"
        --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr
        --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright'
        --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/info/*'
        --dpkgopt='path-exclude=/usr/share/locale/*'
    )
    # Content key: the recipe and what the suites hold now (their InRelease files name every package's hash).
    local releases epoch key
    releases="$(python3 - "$mirror/dists/$suite" "$mirror/dists/$suite-updates" \
        "$security_mirror/dists/$suite-security" <<'PY'
import email.utils, hashlib, sys, urllib.request
digest, newest = hashlib.sha256(), 0
for dist in sys.argv[1:]:
    with urllib.request.urlopen(f"{dist}/InRelease", timeout=30) as response:
        text = response.read()
    digest.update(text)
    for line in text.decode("utf-8", "replace").splitlines():
        if line.startswith("Date:"):
            newest = max(newest, int(email.utils.parsedate_to_datetime(line[5:].strip()).timestamp()))
            break
print(digest.hexdigest(), newest)
PY
    )" || { echo "build-image.sh: cannot read $mirror/dists/$suite/InRelease (the Debian mirror): set DEBIAN_MIRROR or use --base IMAGE" >&2; exit 1; }
    epoch="${releases#* }"
    key="$(printf '%s\n' "${releases% *}" "${sources[@]}" "${options[@]}" | sha256sum | cut -c1-16)"
    base="localhost/ccs-exporter-base:bookworm-$key"
    if "$engine" image inspect "$base" >/dev/null 2>&1; then
        echo "base: $base (cached: same recipe, Debian unchanged since)"
        return
    fi
    echo "base: making $base with mmdebstrap (Debian bookworm, Python 3.11)"
    local work
    work="$(mktemp -d)"
    if ! SOURCE_DATE_EPOCH="$epoch" mmdebstrap "${options[@]}" --format=tar "$suite" "$work/rootfs.tar" \
        "${sources[@]}" >"$state_dir/base.log" 2>&1; then
        rm -rf "$work"
        show_failure "making the Debian base (mmdebstrap)" "$state_dir/base.log"
        exit 1
    fi
    # What python:3.11-slim sets too; the recipe key as a label to find the base by.
    "$engine" import --change 'ENV LANG=C.UTF-8' --change 'CMD ["python3"]' \
        --change "LABEL org.opencontainers.image.description=\"Debian bookworm with Python 3.11, made by .ci/build-image.sh\"" \
        "$work/rootfs.tar" "$base" >>"$state_dir/base.log" 2>&1 || {
        rm -rf "$work"; show_failure "importing the Debian base" "$state_dir/base.log"; exit 1; }
    rm -rf "$work"
}

case "$base_choice" in
    debian) debian_base ;;
    pinned) base="$(sed -n 's/^ARG PYTHON_IMAGE=//p' Dockerfile)"; echo "base: $base (the Dockerfile's default)" ;;
    *) base="$base_choice"; echo "base: $base" ;;
esac
phase_done "base image"

# --- the wheelhouse ------------------------------------------------------------------------------------------
build_args=()
if ! $use_index; then
    pip_python=""
    for candidate in python3 /usr/bin/python3; do
        if "$candidate" -m pip --version >/dev/null 2>&1; then pip_python="$candidate"; break; fi
    done
    [ -n "$pip_python" ] || die_usage "pip is missing (it downloads the wheelhouse): apt-get install python3-pip, or pass --index"
    # The runtime dependencies as pyproject.toml lists them (constraints.txt pins each one): the key of the
    # cached wheelhouse, and what it holds, without building the package on the host.
    requirements="$(sed -n '/^dependencies = \[/,/^\]/p' pyproject.toml | sed -n 's/^ *"\(.*\)",\{0,1\}$/\1/p')"
    [ -n "$requirements" ] || die_usage "no dependencies = [...] list in pyproject.toml"
    wheel_key="$(printf '%s\n' "$requirements" | cat - constraints.txt | sha256sum | cut -c1-16)"
    wheelhouse="$repo/.tools/wheelhouse/$wheel_key"
    if [ ! -f "$wheelhouse/.complete" ]; then
        rm -rf "$wheelhouse"
        mkdir -p "$wheelhouse"
        printf '%s\n' "$requirements" 'setuptools>=77' wheel >"$state_dir/wheelhouse-requirements.txt"
        # The wheels pip inside the image would pick: CPython 3.11, manylinux up to glibc 2.36 (bookworm).
        platforms=()
        for minor in $(seq 36 -1 17); do platforms+=(--platform "manylinux_2_${minor}_x86_64"); done
        # setuptools and wheel: `pip install .` builds the package in an isolated environment from them.
        if ! "$pip_python" -m pip download --only-binary=:all: "${platforms[@]}" --platform manylinux2014_x86_64 \
            --python-version 3.11 --implementation cp --abi cp311 --constraint constraints.txt \
            --dest "$wheelhouse" --requirement "$state_dir/wheelhouse-requirements.txt" \
            >"$state_dir/wheelhouse.log" 2>&1; then
            show_failure "downloading the wheelhouse (pip download)" "$state_dir/wheelhouse.log"
            exit 1
        fi
        touch "$wheelhouse/.complete"
    fi
    echo "wheelhouse: $wheelhouse ($(find "$wheelhouse" -name '*.whl' | wc -l) wheels)"
    build_args+=(--build-context "wheelhouse=$wheelhouse" --network=none)
    phase_done "wheelhouse"
fi

if $prepare_only; then
    echo "prepared: base and wheelhouse ($((SECONDS - started)) s); the build is left to a later run"
    exit 0
fi

# --- the build -----------------------------------------------------------------------------------------------
revision="$(git rev-parse HEAD 2>/dev/null || echo unknown)"
# The commit's time, not the clock's: the same commit builds the same labels.
created="$(git log -1 --format=%cI 2>/dev/null || echo unknown)"
build_args+=(
    --build-arg "PYTHON_IMAGE=$base" --build-arg "VERSION=$version"
    --build-arg "REVISION=$revision" --build-arg "CREATED=$created"
    --tag "$image" --file Dockerfile
)
[ "$engine" = docker ] && build_args+=(--progress=plain)
echo "building $image"
if ! "$engine" build "${build_args[@]}" . >"$log" 2>&1; then
    show_failure "the build" "$log"
    exit 1
fi
phase_done "build"
# Untagged images older than a day (earlier builds, stale build cache) go; today's stay as the build cache.
"$engine" image prune --force --filter until=24h >/dev/null 2>&1 || true

image_id="$("$engine" image inspect --format '{{.Id}}' "$image")"
size="$("$engine" image inspect --format '{{.Size}}' "$image")"
# What was built, with which engine (and podman's configuration): `. .tools/image/built.env` in a shell.
{
    echo "# Written by .ci/build-image.sh: the image it built last. Source it: . .tools/image/built.env"
    echo "ENGINE=$engine"
    echo "IMAGE=$image"
    echo "IMAGE_ID=$image_id"
    echo "BASE=$base"
    if [ "$engine" = podman ]; then
        echo "export CONTAINERS_CONF=$CONTAINERS_CONF"
        echo "export CONTAINERS_STORAGE_CONF=$CONTAINERS_STORAGE_CONF"
    fi
} >"$state_dir/built.env"
echo
echo "built $image ($engine, image id ${image_id#sha256:})"
echo "size: $((size / 1000000)) MB"
echo "layers (newest first; size, instruction):"
"$engine" history --no-trunc --format '{{.Size}}\t{{.CreatedBy}}' "$image" | while IFS=$'\t' read -r layer_size created_by; do
    case "$layer_size" in 0B | 0 | "0 B") continue ;; esac
    case "$created_by" in *"/bin/sh -c "*) created_by="RUN ${created_by#*/bin/sh -c }" ;; esac
    created_by="${created_by/RUN \#(nop) /}"
    created_by="${created_by#\#(nop) }"
    created_by="$(printf '%s' "$created_by" | tr -s ' ' | sed -E 's/((file|dir):[0-9a-f]{12})[0-9a-f]+/\1/')"
    printf '  %8s  %s\n' "$layer_size" "$(printf '%s' "$created_by" | cut -c1-100)"
done
echo "took $((SECONDS - started)) s; run it: . .tools/image/built.env && \"\$ENGINE\" run --rm \"\$IMAGE\" --version"
