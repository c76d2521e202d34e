#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-2-Clause
# One-stop set-up for pyelog on a Debian-like machine, run as root.
# `make setup` runs it on the host; the Vagrant guest provisions with it too.
# Idempotent: every step checks before it acts, so a second run takes seconds.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
venv=${PYELOG_VENV:-$here/.venv}
# gcc and python3-dev build pyelog's one C extension (the ring reader's hot path).
packages=(python3-bpfcc python3-venv python3-dev gcc bpftool iproute2 linux-headers-amd64 iperf3 libatomic1)

log() { printf 'setup: %s\n' "$*"; }

if [ "$(id -u)" != 0 ]; then
    echo "setup: must run as root (installs Debian packages and mounts tracefs/bpffs)" >&2
    exit 1
fi

# install_packages PKG...: apt-get install those not installed yet.
install_packages() {
    local missing=() p
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        log "installing ${missing[*]}"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    fi
}

# `setup.sh --packages PKG...` installs just those (vagrant/vm-test.sh's host
# packages), with the same idempotent rule.
if [ "${1:-}" = "--packages" ]; then
    shift
    install_packages "$@"
    exit 0
fi

install_packages "${packages[@]}"

# PYELOG_SPARK=1 (make setup, so make test and CI): also Java and pyspark,
# for the Spark job's test (tests/test_spark.py). Not in the VM guest: its
# tests do not include it, and a 400 MB pyspark install under TCG is slow.
extras=test
if [ "${PYELOG_SPARK:-0}" = 1 ]; then
    install_packages openjdk-17-jre-headless
    extras=test,spark
fi

# bcc compiles against /lib/modules/$(uname -r)/build. When no headers package
# matches the running kernel, Debian's generic amd64 headers are close enough
# for what pyelog's programs use (uapi, tracepoint args, struct bpf_sock_ops);
# pyelog never reads kernel-internal structs through them.
mod=/lib/modules/$(uname -r)
if [ ! -e "$mod/build" ]; then
    build=$(ls -d /usr/src/linux-headers-*-amd64 2>/dev/null | sort -V | tail -n 1)
    common=$(ls -d /usr/src/linux-headers-*-common 2>/dev/null | sort -V | tail -n 1)
    if [ -z "$build" ] || [ -z "$common" ]; then
        echo "setup: no kernel headers under /usr/src to link into $mod" >&2
        exit 1
    fi
    log "linking $mod/build -> $build"
    mkdir -p "$mod"
    ln -sfn "$build" "$mod/build"
    ln -sfn "$common" "$mod/source"
fi

mountpoint -q /sys/kernel/tracing || { log "mounting tracefs"; mount -t tracefs nodev /sys/kernel/tracing; }
mountpoint -q /sys/fs/bpf || { log "mounting bpffs"; mount -t bpf bpf /sys/fs/bpf; }

if [ ! -x "$venv/bin/python" ]; then
    log "creating $venv"
    /usr/bin/python3 -m venv --system-site-packages "$venv"
fi
# Reinstall only when the package's build inputs changed since the last
# install (the install also compiles the C extensions, pyelog/*/_*.c, in place).
stamp=$venv/.pyelog-installed
newer=$(find "$here/pyproject.toml" "$here/setup.py" "$here/pyelog/kernel/_ring.c" "$here/pyelog/records/_records.c" \
    -newer "$stamp" 2>/dev/null || true)
if [ "$extras" = test,spark ] && ! "$venv/bin/python" -c 'import pyspark' 2>/dev/null; then
    newer=yes
fi
if [ ! -f "$stamp" ] || [ -n "$newer" ]; then
    log "installing pyelog (editable) with extras: $extras"
    "$venv/bin/pip" install -q --disable-pip-version-check -e "$here[$extras]"
    touch "$stamp"
fi
log "ready ($venv)"
