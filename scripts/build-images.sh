#!/usr/bin/env bash
# Build the sandbox base images (Debian + systemd as PID 1) with debootstrap.
# No container registry is reachable, so images are built locally and cached:
# an image is rebuilt only when this recipe (hashed below) changes.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
packages=systemd,systemd-sysv,python3,python3-apt,sudo,ca-certificates,iproute2,procps,curl,gnupg
recipe_hash=$( { cat "$0"; echo "$mirror $packages"; } | sha256sum | cut -c1-12)

build_one() {
  local suite=$1 image="obs-sandbox/debian:$1"
  if [ "$(docker image inspect -f '{{ index .Config.Labels "obs.recipe" }}' "$image" 2>/dev/null || true)" = "$recipe_hash" ]; then
    echo "image $image is up to date (recipe $recipe_hash)"
    return 0
  fi
  local root
  root=$(mktemp -d "/var/tmp/obs-rootfs-$suite.XXXXXX")
  echo "building $image with debootstrap ($suite, recipe $recipe_hash)"
  if ! debootstrap --variant=minbase --include="$packages" "$suite" "$root" "$mirror" >"$root.log" 2>&1; then
    tail -n 30 "$root.log"
    rm -rf "$root" "$root.log"
    return 1
  fi
  # Units that make no sense (or hang) inside a container.
  for unit in getty.target systemd-udevd.service systemd-udev-trigger.service \
              systemd-modules-load.service sys-kernel-debug.mount sys-kernel-tracing.mount \
              systemd-firstboot.service systemd-remount-fs.service; do
    ln -sf /dev/null "$root/etc/systemd/system/$unit"
  done
  echo "obs-sandbox" >"$root/etc/hostname"
  : >"$root/etc/machine-id"
  rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
  # Empty package lists must look stale, or apt's cache_valid_time trusts them.
  touch -d @0 "$root"/var/lib/apt/lists "$root"/var/cache/apt
  tar -C "$root" -c . | docker import \
    --change 'CMD ["/sbin/init"]' \
    --change 'ENV container=docker' \
    --change "LABEL obs.recipe=$recipe_hash" - "$image" >/dev/null
  rm -rf "$root" "$root.log"
  echo "built $image"
}

suites=("$@")
[ ${#suites[@]} -gt 0 ] || suites=(trixie bookworm)
pids=()
for s in "${suites[@]}"; do build_one "$s" & pids+=($!); done
rc=0
for p in "${pids[@]}"; do wait "$p" || rc=1; done
exit $rc
