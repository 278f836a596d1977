#!/usr/bin/env bash
# Prepare a Debian 12/13 machine (as root) to run and test the collection:
# system packages, the pinned toolchain in .venv/, and a collections tree in
# .collections/ where this checkout is lightweb.webpy and containers.podman
# (needed by molecule's podman driver) is vendored from the `ansible` wheel.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)

# Version of the `ansible` package whose containers.podman we vendor
# (12.x pairs with ansible-core 2.19).
ansible_bundle_version=12.3.0

if [ "${LIGHTWEB_SKIP_APT:-0}" != 1 ]; then
  missing=()
  for pkg in podman runc mmdebstrap python3-venv git uidmap curl; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "==> apt-get install ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
fi

if [ ! -x .venv/bin/ansible-playbook ] || ! cmp -s requirements-dev.txt .venv/.requirements-dev.txt; then
  echo "==> Python toolchain in .venv/"
  python3 -m venv .venv
  .venv/bin/pip install -q --disable-pip-version-check --upgrade pip
  .venv/bin/pip install -q --disable-pip-version-check -r requirements-dev.txt
  cp requirements-dev.txt .venv/.requirements-dev.txt
fi

# This checkout, visible to Ansible as lightweb.webpy.
mkdir -p .collections/dev/ansible_collections/lightweb
ln -sfn "$repo" .collections/dev/ansible_collections/lightweb/webpy

vendor=.collections/vendor/ansible_collections
if [ ! -f "$vendor/containers/podman/MANIFEST.json" ] || [ ! -f ".collections/vendor/.ansible-$ansible_bundle_version" ]; then
  echo "==> containers.podman from ansible==$ansible_bundle_version"
  rm -rf .collections/vendor .collections/download
  mkdir -p .collections/download "$vendor"
  .venv/bin/pip download -q --disable-pip-version-check --no-deps \
    -d .collections/download "ansible==$ansible_bundle_version"
  .venv/bin/python - "$vendor/.." .collections/download/ansible-*.whl <<'PY'
import sys, zipfile
dest, wheel = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as zf:
    members = [n for n in zf.namelist() if n.startswith("ansible_collections/containers/podman/")]
    zf.extractall(dest, members)
PY
  rm -rf .collections/download
  touch ".collections/vendor/.ansible-$ansible_bundle_version"
fi
echo "==> toolchain ready: $(.venv/bin/ansible --version | head -1)"
