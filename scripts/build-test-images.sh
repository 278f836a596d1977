#!/usr/bin/env bash
# Build the local Debian test images (no registry is needed): a minimal
# Debian with systemd as PID 1 and Python for Ansible.
#   localhost/lightweb-test:debian12   (bookworm)
#   localhost/lightweb-test:debian13   (trixie)
# Images that exist are kept; pass --force to rebuild.
set -euo pipefail
force=0
[ "${1:-}" = "--force" ] && force=1
mirror=${LIGHTWEB_DEBIAN_MIRROR:-http://deb.debian.org/debian}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

for pair in debian12:bookworm debian13:trixie; do
  tag=${pair%%:*}
  suite=${pair##*:}
  image=localhost/lightweb-test:$tag
  if [ "$force" = 0 ] && podman image exists "$image"; then
    echo "==> $image exists"
    continue
  fi
  echo "==> building $image from $suite"
  mmdebstrap --quiet --variant=minbase \
    --include=python3,systemd,systemd-sysv,ca-certificates,sudo,iproute2 \
    "$suite" "$work/$suite.tar" "$mirror"
  podman import --quiet --change 'CMD ["/sbin/init"]' "$work/$suite.tar" "$image" >/dev/null
  rm -f "$work/$suite.tar"
done
