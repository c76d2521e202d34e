#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-2-Clause
# `make vm-test`: pyelog's kernel tests inside a Debian 12 VM (kernel 6.1),
# on this host, as root. See vagrant/README.md.
#
#  1. installs the host's Debian packages (vagrant, vagrant-libvirt, libvirt,
#     QEMU, debootstrap; idempotent; never libvirt-daemon-system, whose
#     default network is a bridge with a private-range address);
#  2. starts virtlogd/libvirtd when they are not running (no systemd here);
#  3. builds the pyelog/bookworm box when missing (vagrant/build-box.sh,
#     cached in /var/cache/pyelog-vm) and adds it to Vagrant;
#  4. `vagrant up` (libvirt, KVM when it works, else TCG; user-mode
#     networking, SSH on 127.0.0.1 only), provisioned by setup.sh;
#  5. runs `pyelog selftest` (the eventlog core), tests/test_tcp_capture.py
#     and tests/test_tcp_wire.py (the record against the wire)
#     in the guest with CI=true (a skipped kernel test fails), or the whole
#     suite with FULL=1, or the pytest arguments in TESTS;
#  6. records TCP in the guest (vagrant/guest-capture.sh), copies the
#     capture back and decodes it here with `pyelog -r`;
#  7. always destroys the VM (success, failure, Ctrl-C), and stops the
#     daemons it started.
set -eEuo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
cd "$here"
export VAGRANT_DEFAULT_PROVIDER=libvirt
export LIBVIRT_DEFAULT_URI=qemu:///system
export VAGRANT_CHECKPOINT_DISABLE=1 VAGRANT_NO_PARALLEL=1
dot=${VAGRANT_DOTFILE_PATH:-$here/.vagrant}
full=${FULL:-}
[ "$full" = 0 ] && full=
tests=${TESTS:-}
# The whole suite includes the 1 GiB-buffer test: 4 GiB of rings on 2 CPUs.
[ -n "$full" ] && export PYELOG_VM_MEMORY=${PYELOG_VM_MEMORY:-7168}
t0=$SECONDS
timings=()
log() { printf 'vm-test: %s\n' "$*"; }
mark() { timings+=("$(printf '%-28s %4d s' "$1" $((SECONDS - $2)))"); log "$1: $((SECONDS - $2)) s"; step=; }
# The step under way, for the timings of a run that fails or is interrupted.
step= step_t=0
begin() { step=$1; step_t=$SECONDS; }

[ "$(id -u)" = 0 ] || { echo "vm-test: must run as root" >&2; exit 1; }
trap 'echo "vm-test: failed at vm-test.sh line $LINENO" >&2' ERR

# --- 1. host packages -------------------------------------------------------
t=$SECONDS
host_packages=(vagrant vagrant-libvirt libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients
               qemu-system-x86 qemu-utils debootstrap e2fsprogs rsync openssh-client)
"$repo/setup.sh" --packages "${host_packages[@]}"
mark "host packages" "$t"

# --- 2. libvirt daemons -----------------------------------------------------
t=$SECONDS
# libvirt's QEMU driver resolves its built-in user (libvirt-qemu) even when
# qemu.conf names another; libvirt-daemon-system would create it.
getent passwd libvirt-qemu >/dev/null ||
    adduser --quiet --system --group --no-create-home --home /var/lib/libvirt libvirt-qemu
if [ ! -e /etc/libvirt/qemu.conf ]; then
    printf '%s\n' '# Written by pyelog vagrant/vm-test.sh (no libvirt-daemon-system here):' \
        '# QEMU runs as root and reads the box kernel from /root/.vagrant.d.' \
        'user = "root"' 'group = "root"' >/etc/libvirt/qemu.conf
fi
mkdir -p /var/log/libvirt /var/lib/libvirt/images /var/lib/libvirt/qemu /var/cache/libvirt /run/libvirt
started=()
alive() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }
if ! alive /run/virtlogd.pid; then virtlogd -d; started+=(/run/virtlogd.pid); fi
if ! alive /run/libvirtd.pid; then libvirtd -d; started+=(/run/libvirtd.pid); fi
for _ in $(seq 60); do virsh version >/dev/null 2>&1 && break; sleep 0.5; done
virsh version >/dev/null
mark "libvirt daemons" "$t"

stop_daemons() {
    local f pid
    for f in "${started[@]}"; do
        pid=$(cat "$f" 2>/dev/null) || continue
        kill "$pid" 2>/dev/null || true
    done
}

trap 'stop_daemons' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- 3. the box -------------------------------------------------------------
t=$SECONDS
recipe=$("$here/build-box.sh" --recipe)
cache=${PYELOG_VM_CACHE:-/var/cache/pyelog-vm}
boxfile=$cache/pyelog-bookworm-$recipe.box
boxdir=${VAGRANT_HOME:-$HOME/.vagrant.d}/boxes/pyelog-VAGRANTSLASH-bookworm/0/libvirt
if [ -z "${PYELOG_BOX:-}" ] && [ "$(cat "$boxdir/pyelog-recipe" 2>/dev/null)" != "$recipe" ]; then
    "$here/build-box.sh" "$boxfile"
    # Boxes of earlier recipes in the cache are dead weight (1.3 GB each).
    find "$cache" -maxdepth 1 -name 'pyelog-bookworm-*.box' ! -path "$boxfile" -delete
    # Images of earlier versions of this box in libvirt's pool are stale.
    { virsh vol-list default 2>/dev/null || true; } | awk '$1 ~ /^pyelog-VAGRANTSLASH-bookworm_vagrant_box_image_/ {print $1}' |
        while read -r v; do virsh vol-delete --pool default "$v" >/dev/null || true; done
    vagrant box add --force --name pyelog/bookworm "$boxfile" | stdbuf -oL tr '\r' '\n' | grep --line-buffered -v 'Progress: '
    echo "$recipe" >"$boxdir/pyelog-recipe"
fi
mark "box (build/add if missing)" "$t"

# --- 4. up --------------------------------------------------------------------
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
export PYELOG_VM_SSH_PORT=$port
teardown() {
    trap - EXIT INT TERM
    local t=$SECONDS
    log "tearing the VM down"
    if ! timeout 300 vagrant destroy -f >/dev/null 2>&1; then
        log "vagrant destroy failed; removing the domain with virsh"
    fi
    local prefix dom
    prefix=pyelog-$(printf '%s' "$repo" | sha1sum | cut -c1-8)_
    for dom in $(virsh list --all --name 2>/dev/null | grep "^$prefix" || true); do
        virsh destroy "$dom" >/dev/null 2>&1 || true
        virsh undefine "$dom" --remove-all-storage >/dev/null 2>&1 || true
    done
    rm -rf "$dot/machines"
    mark "teardown" "$t"
    stop_daemons
    log "timings:"
    printf '  %s\n' "${timings[@]}"
    printf '  %-28s %4d s\n' "whole vm-test" $((SECONDS - t0))
}
trap 'status=$?; [ -n "$step" ] && mark "$step (failed)" "$step_t"; teardown; exit $status' EXIT

t=$SECONDS
begin "vagrant up + provision"
log "vagrant up (SSH on 127.0.0.1:$port)"
# (Vagrant's upload progress is one \r-separated line per box: keep the rest.)
# Each line gets the seconds since `vagrant up` started.
vagrant up --provider=libvirt 2>&1 | stdbuf -oL tr '\r' '\n' | grep --line-buffered -v 'Progress: ' |
    while IFS= read -r line; do printf '[%4d s] %s\n' $((SECONDS - t)) "$line"; done
mark "vagrant up + provision" "$t"
vagrant ssh-config >"$dot/ssh-config"
guest() { ssh -F "$dot/ssh-config" default "$@"; }

# --- 5. tests in the guest ----------------------------------------------------
t=$SECONDS
begin "tests in guest"
guest 'echo "guest kernel $(uname -r); tcp tracepoints: $(sudo ls /sys/kernel/tracing/events/tcp | tr "\n" " ")"' || true
# CI=true: a skipped kernel test fails. PYELOG_TEST_TIME_SCALE: the guest
# is emulated (TCG: bcc compiles pyelog's programs in ~45 s, not ~1 s), for
# tests whose deadlines honour it.
pytest="cd /vagrant && sudo CI=true PYELOG_TEST_TIME_SCALE=${PYELOG_TEST_TIME_SCALE:-5} .venv/bin/python -m pytest -ra -p no:cacheprovider"
if [ -n "$full" ]; then
    log "the whole test suite in the guest (CI=true)"
    guest "$pytest"
elif [ -n "$tests" ]; then
    log "tests in the guest (CI=true): $tests"
    guest "$pytest $(printf '%q ' $tests)"
else
    log "pyelog selftest in the guest"
    guest 'sudo /vagrant/.venv/bin/python -m pyelog.cli selftest'
    log "TCP capture kernel tests in the guest (CI=true)"
    guest "$pytest tests/test_tcp_capture.py tests/test_tcp_wire.py tests/test_teardown.py::test_sigkill_tcp_capture_leaves_nothing_attached"
fi
mark "tests in guest" "$t"

# --- 6. a capture made in the guest, decoded here ------------------------------
t=$SECONDS
begin "capture in guest + decode"
# Captures are private (0600, root's): hand this one to the ssh user for scp.
guest 'sudo /vagrant/vagrant/guest-capture.sh /tmp/vm.elog && sudo chown "$(id -u)" /tmp/vm.elog'
rm -f "$dot/vm.elog"
scp -q -F "$dot/ssh-config" default:/tmp/vm.elog "$dot/vm.elog"
text=$("$repo/.venv/bin/python" -m pyelog.cli -r "$dot/vm.elog" -e)
# sed, not head: head leaves after 12 lines and, once the text outgrows the
# pipe buffer, printf dies of SIGPIPE, which pipefail makes this script's exit.
printf '%s\n' "$text" | sed -n '1,12p'
n=$(printf '%s\n' "$text" | grep -c '\[tcp\]' || true)
grep -q 'IPv4 connection' <<<"$text" || { echo "vm-test: no 'IPv4 connection' event in the guest's capture" >&2; exit 1; }
[ "$n" -gt 0 ] || { echo "vm-test: no [tcp] events in the guest's capture" >&2; exit 1; }
log "guest capture decoded on the host: $n [tcp] events ($dot/vm.elog)"
mark "capture in guest + decode" "$t"
log "passed"
