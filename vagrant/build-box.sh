#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-2-Clause
# Build pyelog's Debian 12 (bookworm) Vagrant box for the libvirt provider,
# from the configured Debian mirror, with no box download:
#
#   debootstrap -> apt-get install kernel, headers, bcc, bpftool, sshd, the
#   guest agent -> the vagrant user with Vagrant's insecure key -> ext4 image
#   (mkfs.ext4 -d, no loop devices, no partitions) -> qcow2 -> box tarball
#   with the kernel and initrd beside the disk and a box Vagrantfile that
#   boots them directly (libvirt direct kernel boot: no boot loader needed).
#
# Usage (root): vagrant/build-box.sh [OUT.box]   (--recipe: print the recipe id)
# The result is cached: an existing OUT.box built from this same recipe is
# kept (delete it, or the cache directory, to build again).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
cache=${PYELOG_VM_CACHE:-/var/cache/pyelog-vm}
# The recipe id: the hash of this script and the box Vagrantfile. A changed recipe builds a new box.
repo=$(dirname "$here")
# ... and pyproject.toml: the box carries pyelog's Python dependencies.
recipe=$(cat "$here/build-box.sh" "$here/box.Vagrantfile" "$repo/pyproject.toml" | sha256sum | cut -c1-12)
out=${1:-$cache/pyelog-bookworm-$recipe.box}
suite=bookworm
disk_gb=${PYELOG_VM_DISK_GB:-8}
[ "${1:-}" = --recipe ] && { echo "$recipe"; exit 0; }
log() { printf 'build-box: %s\n' "$*"; }

[ "$(id -u)" = 0 ] || { echo "build-box: must run as root (debootstrap, chroot)" >&2; exit 1; }
if [ -s "$out" ]; then log "cached: $out"; exit 0; fi
for t in debootstrap mkfs.ext4 qemu-img; do
    command -v "$t" >/dev/null || { echo "build-box: $t missing (apt-get install debootstrap e2fsprogs qemu-utils)" >&2; exit 1; }
done

# The configured Debian mirror: the first deb822 URIs / sources.list line
# that serves the main archive (not -security).
mirror=$( (grep -hE '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '{print $2}';
           grep -hE '^deb ' /etc/apt/sources.list 2>/dev/null | awk '{print $2}') |
          grep -v security | head -n 1 || true)
mirror=${PYELOG_VM_MIRROR:-${mirror:-http://deb.debian.org/debian}}
security=${mirror%/debian}/debian-security

mkdir -p "$cache"
work=$(mktemp -d "$cache/build.XXXXXX")
root=$work/root
mounted=()
cleanup() {
    local m
    for m in "${mounted[@]}"; do umount -l "$m" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

t0=$SECONDS
log "debootstrap $suite from $mirror"
debootstrap --variant=minbase --include=ca-certificates "$suite" "$root" "$mirror" >"$work/debootstrap.log" 2>&1 ||
    { tail -n 30 "$work/debootstrap.log" >&2; exit 1; }
log "debootstrap done in $((SECONDS - t0)) s"

for m in proc sys dev dev/pts; do
    case $m in
        proc) mount -t proc proc "$root/proc" ;;
        sys) mount -t sysfs sys "$root/sys" ;;
        dev) mount --bind /dev "$root/dev" ;;
        dev/pts) mount -t devpts devpts "$root/dev/pts" ;;
    esac
    mounted=("$root/$m" "${mounted[@]}")
done

cat >"$root/etc/apt/sources.list" <<EOF
deb $mirror $suite main
deb $mirror $suite-updates main
deb $security $suite-security main
EOF
# No daemons start inside the chroot.
printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
chmod +x "$root/usr/sbin/policy-rc.d"
# Trust the CAs this host added by hand (a TLS-inspecting proxy, a company CA):
# the guest reaches PyPI through this host.
for c in /usr/local/share/ca-certificates/*.crt /etc/ssl/certs/*.crt; do
    [ -f "$c" ] && [ ! -L "$c" ] || continue
    case $c in */ca-certificates.crt) continue ;; esac
    cp "$c" "$root/usr/local/share/ca-certificates/host-$(basename "$c")"
done

packages=(
    systemd-sysv udev kmod dbus linux-image-amd64 linux-headers-amd64 initramfs-tools
    openssh-server sudo qemu-guest-agent rsync iproute2 iputils-ping procps netbase less make
    python3 python3-venv python3-dev gcc python3-bpfcc bpftool iperf3 libatomic1
)
t1=$SECONDS
log "installing ${packages[*]}"
chroot "$root" /bin/sh -c "export DEBIAN_FRONTEND=noninteractive LC_ALL=C
    apt-get update -qq && apt-get install -y -qq --no-install-recommends ${packages[*]} &&
    update-ca-certificates >/dev/null && apt-get clean && rm -rf /var/lib/apt/lists/*" \
    >"$work/install.log" 2>&1 || { tail -n 30 "$work/install.log" >&2; exit 1; }
log "packages installed in $((SECONDS - t1)) s"
rm -f "$root/usr/sbin/policy-rc.d"

# pyelog's Python dependencies, installed here at native speed into the venv
# setup.sh will use in the guest (/vagrant/.venv; rsync leaves it alone):
# under TCG, pip installing numpy/matplotlib takes many minutes. setup.sh
# still runs `pip install -e` in the guest, which then only adds pyelog (and
# whatever pyproject.toml gained since this box was built).
printf '[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n' >"$root/etc/pip.conf"
pydeps=$(python3 -c 'import shlex, sys, tomllib
p = tomllib.load(open(sys.argv[1], "rb"))["project"]
deps = p.get("dependencies", []) + p.get("optional-dependencies", {}).get("test", [])
print(" ".join(shlex.quote(d) for d in deps))' "$repo/pyproject.toml")
t3=$SECONDS
log "venv /vagrant/.venv with setuptools wheel $pydeps"
chroot "$root" /bin/sh -c "python3 -m venv --system-site-packages /vagrant/.venv &&
    env -u PIP_FIND_LINKS -u PIP_CONSTRAINT PIP_CERT=/etc/ssl/certs/ca-certificates.crt \
    /vagrant/.venv/bin/pip install -q --disable-pip-version-check --no-cache-dir 'setuptools>=61' wheel $pydeps" \
    >"$work/pip.log" 2>&1 || { tail -n 30 "$work/pip.log" >&2; exit 1; }
log "venv done in $((SECONDS - t3)) s"

kver=$(ls "$root/lib/modules" | sort -V | tail -n 1)
[ -e "$root/lib/modules/$kver/build" ] || { echo "build-box: no headers for $kver" >&2; exit 1; }

# System configuration: root on the whole virtio disk, DHCP on the one NIC
# (QEMU user-mode networking: DNS at 10.0.2.3 inside the guest), sshd, the
# vagrant user with Vagrant's insecure key (vagrant up replaces it).
echo pyelog-vm >"$root/etc/hostname"
printf '127.0.0.1 localhost\n127.0.1.1 pyelog-vm\n::1 localhost ip6-localhost ip6-loopback\n' >"$root/etc/hosts"
echo '/dev/vda / ext4 defaults,errors=remount-ro 0 1' >"$root/etc/fstab"
mkdir -p "$root/etc/systemd/network"
printf '[Match]\nName=e*\n\n[Network]\nDHCP=yes\n' >"$root/etc/systemd/network/10-dhcp.network"
echo 'nameserver 10.0.2.3' >"$root/etc/resolv.conf"
printf 'UseDNS no\n' >"$root/etc/ssh/sshd_config.d/vagrant.conf"
keys=$(ls -d /usr/share/rubygems-integration/all/gems/vagrant-*/keys 2>/dev/null | head -n 1)
pub=${PYELOG_VM_PUBKEY:-$keys/vagrant.pub}
[ -s "$pub" ] || { echo "build-box: no Vagrant public key at $pub" >&2; exit 1; }
chroot "$root" /bin/sh -e -c '
    systemctl enable systemd-networkd ssh >/dev/null 2>&1
    systemctl mask apt-daily.timer apt-daily-upgrade.timer e2scrub_reap.service >/dev/null 2>&1 || true
    useradd -m -s /bin/bash -G sudo vagrant
    echo vagrant:vagrant | chpasswd
    echo root:vagrant | chpasswd'
echo 'vagrant ALL=(ALL) NOPASSWD: ALL' >"$root/etc/sudoers.d/vagrant"
chmod 0440 "$root/etc/sudoers.d/vagrant"
install -d -m 0700 -o 1000 -g 1000 "$root/home/vagrant/.ssh"
install -m 0600 -o 1000 -g 1000 "$pub" "$root/home/vagrant/.ssh/authorized_keys"
# Fresh machine-id on first boot.
: >"$root/etc/machine-id"

box=$work/box
mkdir -p "$box"
cp "$root/boot/vmlinuz-$kver" "$box/vmlinuz"
cp "$root/boot/initrd.img-$kver" "$box/initrd.img"
chmod 0644 "$box/vmlinuz" "$box/initrd.img"
for m in "${mounted[@]}"; do umount "$m"; done
mounted=()

t2=$SECONDS
log "ext4 image (${disk_gb} GiB, sparse) and qcow2"
mkfs.ext4 -q -F -L pyelog-root -d "$root" "$work/root.raw" "${disk_gb}G" >/dev/null
qemu-img convert -O qcow2 "$work/root.raw" "$box/box.img"
rm -f "$work/root.raw"
cat >"$box/metadata.json" <<EOF
{"provider": "libvirt", "format": "qcow2", "virtual_size": $disk_gb}
EOF
cp "$here/box.Vagrantfile" "$box/Vagrantfile"
printf '%s\n' "$recipe" >"$box/recipe"
printf 'kernel %s\n' "$kver" >"$box/info"
tar -C "$box" -cf "$work/out.box" metadata.json Vagrantfile box.img vmlinuz initrd.img recipe info
mv "$work/out.box" "$out"
log "image done in $((SECONDS - t2)) s"
log "built $out ($(du -h "$out" | cut -f1), kernel $kver) in $((SECONDS - t0)) s"
