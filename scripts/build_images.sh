#!/usr/bin/env bash
# Build the CPU image and the Home Assistant add-on image with buildah, start each, and speak
# through it with real clients (scripts/image_check.py). No Docker daemon is needed.
#
#   scripts/build_images.sh [cpu|addon|all]      (default: all)
#   ARCH=arm64 scripts/build_images.sh [cpu|addon|all]   (another CPU, under emulation)
#
# ARCH (Debian's name: amd64, arm64; default the host's) builds and runs the images for that
# architecture. A foreign one runs under Debian's qemu-user-static through binfmt_misc (as
# root this script mounts binfmt_misc and registers /usr/lib/binfmt.d/qemu-<cpu>.conf when
# they are not yet); every image and base made for it gets a "-<arch>" tag suffix. Exit
# status 3, with one line saying why, when the architecture cannot be emulated here.
# QEMU_CPU (foreign ARCH only): the CPU model qemu emulates for the run (e.g. cortex-a72, a
# Raspberry Pi 4's; default qemu's "max", every feature). READY_TIMEOUT: seconds to healthy.
#
# Bases: the Dockerfiles' registry defaults when the registry answers; otherwise (Docker Hub
# and ghcr unreachable) a Debian bookworm base made here with mmdebstrap from the Debian
# archive (python3 3.11, python3-venv, ca-certificates) and a uv image holding the uv binary
# from PyPI's wheel. A base made here trusts the host's CA bundle (SSL_CERT_FILE, PIP_CERT in
# its config), so pip and uv inside the build pass a TLS-inspecting proxy; the Dockerfiles do
# not know about it. The add-on's base is that base plus jq, curl and a stand-in for HA's
# s6-overlay and bashio (/command/with-contenv, bashio reading /data/options.json as the
# Supervisor writes it), since HA's base images live on ghcr.
#
# Environment: EXTRAS (CPU image's language extras, default ""), WORK (default
# /tmp/fastkokoro-images), REPORT (JSON report path, default $WORK/report.json),
# PYTHON_IMAGE, UV_IMAGE, BUILD_FROM (force a base), PULL_TIMEOUT (s, default 60).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
WHAT=${1:-all}
log() { printf '[build_images] %s\n' "$*" >&2; }
machine_of() { case $1 in amd64) echo x86_64 ;; arm64) echo aarch64 ;; *) echo "$1" ;; esac; }
arch_of() { case $1 in x86_64) echo amd64 ;; aarch64) echo arm64 ;; *) echo "$1" ;; esac; }
HOST_ARCH=$(arch_of "$(uname -m)")
ARCH=${ARCH:-$HOST_ARCH}
MACHINE=$(machine_of "$ARCH")    # uname -m inside the image; uv's wheel tag
HA_ARCH=$MACHINE                 # Home Assistant's names: amd64, aarch64
[ "$ARCH" = amd64 ] && HA_ARCH=amd64
SUFFIX=""
[ "$ARCH" = "$HOST_ARCH" ] || SUFFIX="-$ARCH"
WORK=${WORK:-/tmp/fastkokoro-images}
REPORT=${REPORT:-$WORK/report.json}
EXTRAS=${EXTRAS-}
UV_VERSION=$(sed -n 's/^ARG UV_IMAGE=.*uv:\([0-9.]*\)$/\1/p' docker/Dockerfile.cpu)
PULL_TIMEOUT=${PULL_TIMEOUT:-60}
HOST_CA=${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}
LOCAL_BASE=localhost/fastkokoro-base:bookworm$SUFFIX
LOCAL_ADDON_BASE=localhost/fastkokoro-addon-base:bookworm$SUFFIX
LOCAL_UV=localhost/fastkokoro-uv:$UV_VERSION$SUFFIX
BUILDAH=(buildah)
mkdir -p "$WORK"
export BUILDAH_ISOLATION=chroot

have_image() {  # present, and built for $ARCH (a registry tag may hold the other one)
    [ "$("${BUILDAH[@]}" inspect --type image --format '{{.OCIv1.Architecture}}' "$1" 2>/dev/null)" = "$ARCH" ]
}
try_pull() {  # registry reachable and image pulled within PULL_TIMEOUT
    have_image "$1" && return 0
    timeout "$PULL_TIMEOUT" "${BUILDAH[@]}" pull -q --arch "$ARCH" "$1" >/dev/null 2>&1 && have_image "$1"
}

for tool in buildah python3; do
    command -v "$tool" >/dev/null || { log "$tool is not installed"; exit 2; }
done

# --- another architecture: qemu-user-static through binfmt_misc ------------------------------
emulation() {  # ready, or exit 3 with the reason
    local binfmt=/proc/sys/fs/binfmt_misc conf="/usr/lib/binfmt.d/qemu-$MACHINE.conf"
    command -v "qemu-$MACHINE-static" >/dev/null \
        || { log "cannot emulate $ARCH: qemu-$MACHINE-static missing (apt-get install qemu-user-static)"; exit 3; }
    if [ ! -e "$binfmt/register" ]; then
        mount -t binfmt_misc binfmt_misc "$binfmt" 2>/dev/null \
            || { log "cannot emulate $ARCH: binfmt_misc cannot be mounted here ($binfmt)"; exit 3; }
    fi
    if [ ! -e "$binfmt/qemu-$MACHINE" ]; then
        [ -f "$conf" ] || { log "cannot emulate $ARCH: $conf missing"; exit 3; }
        cat "$conf" >"$binfmt/register" 2>/dev/null \
            || { log "cannot emulate $ARCH: registering $conf with binfmt_misc failed"; exit 3; }
    fi
    grep -qx enabled "$binfmt/qemu-$MACHINE" \
        || { log "cannot emulate $ARCH: binfmt_misc's qemu-$MACHINE is disabled"; exit 3; }
    # F (fix binary): the interpreter is opened now, so it works inside the image's chroot
    grep -q '^flags:.*F' "$binfmt/qemu-$MACHINE" \
        || { log "cannot emulate $ARCH: qemu-$MACHINE is registered without the F flag"; exit 3; }
    log "emulating $ARCH with $(readlink -f "$(grep '^interpreter' "$binfmt/qemu-$MACHINE" | cut -d' ' -f2)")"
}
[ "$ARCH" = "$HOST_ARCH" ] || emulation

# --- a Debian base made here (once; kept as a local image) -----------------------------------
local_base() {
    have_image "$LOCAL_BASE" && return 0
    command -v mmdebstrap >/dev/null || { log "mmdebstrap is not installed"; exit 2; }
    log "making $LOCAL_BASE with mmdebstrap (Debian bookworm, minbase)"
    mmdebstrap --quiet --arch="$ARCH" --variant=minbase --include=python3,python3-venv,ca-certificates \
        bookworm "$WORK/base.tar" \
        "deb http://deb.debian.org/debian bookworm main" \
        "deb http://deb.debian.org/debian bookworm-updates main" \
        "deb http://deb.debian.org/debian-security bookworm-security main"
    local ctr
    ctr=$(buildah from scratch)
    buildah add "$ctr" "$WORK/base.tar" / >/dev/null
    buildah copy "$ctr" "$HOST_CA" /usr/local/share/host-ca/ca-bundle.crt >/dev/null
    local ca=/usr/local/share/host-ca/ca-bundle.crt
    buildah config --arch "$ARCH" --env SSL_CERT_FILE=$ca --env PIP_CERT=$ca \
        --env REQUESTS_CA_BUNDLE=$ca --env LANG=C.UTF-8 --cmd /bin/bash "$ctr"
    buildah commit -q "$ctr" "$LOCAL_BASE" >/dev/null
    buildah rm "$ctr" >/dev/null
    rm -f "$WORK/base.tar"
}

# --- uv at /uv, from PyPI's wheel (the same version the Dockerfiles pin) --------------------
local_uv() {
    have_image "$LOCAL_UV" && return 0
    log "making $LOCAL_UV from PyPI's uv==$UV_VERSION wheel"
    local dir="$WORK/uv" ctr
    rm -rf "$dir" && mkdir -p "$dir"
    # PyPI's simple index (PEP 691 JSON), sha256-checked; no pip: uv's venvs have none
    python3 - "$UV_VERSION" "$MACHINE" "$dir" <<'PY'
import hashlib, json, sys, urllib.request
version, machine, out = sys.argv[1:]
req = urllib.request.Request(
    "https://pypi.org/simple/uv/", headers={"Accept": "application/vnd.pypi.simple.v1+json"}
)
with urllib.request.urlopen(req, timeout=60) as r:
    files = json.load(r)["files"]
wheel = next(
    f for f in files
    if f["filename"].startswith(f"uv-{version}-") and f"manylinux_2_17_{machine}" in f["filename"]
)
with urllib.request.urlopen(wheel["url"], timeout=300) as r:
    data = r.read()
assert hashlib.sha256(data).hexdigest() == wheel["hashes"]["sha256"], wheel["filename"]
open(f"{out}/{wheel['filename']}", "wb").write(data)
PY
    python3 -m zipfile -e "$dir"/uv-*.whl "$dir/x"
    ctr=$(buildah from scratch)
    buildah copy --chmod 0755 "$ctr" "$dir/x/uv-$UV_VERSION.data/scripts/uv" /uv >/dev/null
    buildah config --arch "$ARCH" "$ctr"
    buildah commit -q "$ctr" "$LOCAL_UV" >/dev/null
    buildah rm "$ctr" >/dev/null
}

# --- the add-on's base: HA's Debian base stand-in ---------------------------------------------
local_addon_base() {
    have_image "$LOCAL_ADDON_BASE" && return 0
    log "making $LOCAL_ADDON_BASE (jq, curl, s6 and bashio stand-ins)"
    local ctr
    ctr=$(buildah from --pull=never "$LOCAL_BASE")
    buildah run "$ctr" -- sh -c 'apt-get update -q && apt-get install -y -q --no-install-recommends jq curl && rm -rf /var/lib/apt/lists/*' >&2
    buildah copy --chmod 0755 "$ctr" scripts/image_addon_shims/with-contenv /command/with-contenv >/dev/null
    buildah copy --chmod 0755 "$ctr" scripts/image_addon_shims/bashio /usr/bin/bashio >/dev/null
    buildah commit -q "$ctr" "$LOCAL_ADDON_BASE" >/dev/null
    buildah rm "$ctr" >/dev/null
}

pick_bases() {
    local py_default uv_default
    py_default=$(sed -n 's/^ARG PYTHON_IMAGE=//p' docker/Dockerfile.cpu)
    uv_default=$(sed -n 's/^ARG UV_IMAGE=//p' docker/Dockerfile.cpu)
    if [ -z "${PYTHON_IMAGE:-}" ]; then
        if try_pull "docker.io/library/$py_default"; then PYTHON_IMAGE=docker.io/library/$py_default
        else log "$py_default unreachable: using a base made here"; local_base; PYTHON_IMAGE=$LOCAL_BASE; fi
    fi
    if [ -z "${UV_IMAGE:-}" ]; then
        if try_pull "$uv_default"; then UV_IMAGE=$uv_default
        else log "$uv_default unreachable: uv from PyPI"; local_uv; UV_IMAGE=$LOCAL_UV; fi
    fi
}

image_size() {  # as buildah reports it, e.g. "913 MB" (uncompressed layers)
    "${BUILDAH[@]}" images --json "$1" | python3 -c 'import json, sys; print(json.load(sys.stdin)[0]["size"])'
}

build() {  # name dockerfile context tag build-args...
    local name=$1 file=$2 context=$3 tag=$4 start end
    shift 4
    log "building $tag ($file)"
    start=$(date +%s.%N)
    # docker format: OCI images drop HEALTHCHECK
    buildah bud --isolation chroot --layers --pull=never --format docker --arch "$ARCH" \
        -f "$file" -t "$tag" "$@" "$context" \
        >"$WORK/build-$name.log" 2>&1 || { tail -40 "$WORK/build-$name.log" >&2; exit 1; }
    end=$(date +%s.%N)
    # buildah 1.28 leaves the working container of the `FROM ${UV_IMAGE} AS uv` stage behind
    "${BUILDAH[@]}" containers -q --filter ancestor="$UV_IMAGE" | xargs -r "${BUILDAH[@]}" rm >/dev/null
    python3 -c "print(round($end - $start, 1))" >"$WORK/build-$name.seconds"
}

pick_bases
results=()
if [ "$WHAT" = cpu ] || [ "$WHAT" = all ]; then
    build cpu docker/Dockerfile.cpu . "localhost/fastkokoro-wyoming:cpu$SUFFIX" \
        --build-arg PYTHON_IMAGE="$PYTHON_IMAGE" --build-arg UV_IMAGE="$UV_IMAGE" \
        --build-arg EXTRAS="$EXTRAS"
    results+=(cpu)
fi
if [ "$WHAT" = addon ] || [ "$WHAT" = all ]; then
    if [ -z "${BUILD_FROM:-}" ]; then
        ha_default="ghcr.io/home-assistant/$HA_ARCH-base-debian:trixie"
        if try_pull "$ha_default"; then BUILD_FROM=$ha_default
        else log "$ha_default unreachable: using a base made here"
            local_base; local_addon_base; BUILD_FROM=$LOCAL_ADDON_BASE; fi
    fi
    # the add-on installs the package from a wheel in addon/wheels until it is on PyPI
    context="$WORK/addon-context"
    rm -rf "$context" && cp -r addon "$context" && rm -f "$context"/wheels/*.whl
    uv build -q --wheel -o "$context/wheels" "$ROOT" 2>/dev/null \
        || python3 -m pip wheel -q --no-deps -w "$context/wheels" "$ROOT"
    build addon "$context/Dockerfile" "$context" "localhost/fastkokoro-wyoming:addon$SUFFIX" \
        --build-arg BUILD_FROM="$BUILD_FROM" --build-arg UV_IMAGE="$UV_IMAGE" \
        --build-arg BUILD_ARCH="$HA_ARCH"
    results+=(addon)
fi

args=()
for name in "${results[@]}"; do
    args+=(--image "$name=localhost/fastkokoro-wyoming:$name$SUFFIX"
           --seconds "$name=$(cat "$WORK/build-$name.seconds")"
           --size "$name=$(image_size "localhost/fastkokoro-wyoming:$name$SUFFIX")")
done
[ -z "${READY_TIMEOUT:-}" ] || args+=(--timeout "$READY_TIMEOUT")
[ "$ARCH" = "$HOST_ARCH" ] || [ -z "${QEMU_CPU:-}" ] || args+=(--qemu-cpu "$QEMU_CPU")
PY=${PYTHON:-$ROOT/.venv/bin/python}  # the dev venv: openai, wyoming, pocketsphinx
"$PY" scripts/image_check.py --work "$WORK" --report "$REPORT" \
    --base "python=$PYTHON_IMAGE" --base "uv=$UV_IMAGE" --base "addon=${BUILD_FROM:-}" \
    --arch "$ARCH" "${args[@]}"
