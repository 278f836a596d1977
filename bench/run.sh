#!/usr/bin/env bash
# The benchmark of BENCHMARKS.md in one command, as root on the test machine:
#   ./bench/run.sh            full run (about 20 minutes)
#   ./bench/run.sh --quick    1 short run per layout, a smoke test
#   ./bench/run.sh --keep     leave the lightweb-bench-* hosts running
#   ./bench/run.sh --no-load  provisioning, memory at rest and the floor only
# Other options: ./bench/run.sh --help. Results: bench/results/<stamp>.{json,md}.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
[ -x "$repo/.venv/bin/ansible-playbook" ] || "$repo/scripts/bootstrap.sh"
podman image exists localhost/lightweb-test:debian12 || "$repo/scripts/build-test-images.sh"
command -v wrk >/dev/null || apt-get install -y wrk
command -v ssh-keygen >/dev/null || apt-get install -y openssh-client
# Ansible reaches the test hosts over SSH with this key (made once, kept out
# of git).
if [ ! -f "$here/.ssh/id_ed25519" ]; then
  install -d -m 700 "$here/.ssh"
  ssh-keygen -q -t ed25519 -N "" -C lightweb-bench -f "$here/.ssh/id_ed25519"
fi
# shellcheck source=/dev/null
source "$repo/scripts/env.sh"
# The test hosts cannot reach PyPI: fetch the app's wheels here, once, for
# their Python (Debian 12: 3.11), as a user with offline hosts would.
wheels=$here/.wheels/py3.11
if ! ls "$wheels"/gunicorn-*.whl >/dev/null 2>&1; then
  python -m pip download --disable-pip-version-check --quiet --only-binary=:all: \
    --python-version=3.11 --dest="$wheels" --requirement="$here/app/requirements.txt"
fi
cd "$here"
exec python bench.py "$@"
