#!/usr/bin/env bash
# See the stack serve a page: provision the built-in example app with
# `ansible-playbook site.yml` into a throw-away Debian 12 container
# (systemd inside), then fetch its page. Re-running converges again.
#   scripts/demo.sh          provision and show the page (http://127.0.0.1:8080/)
#   scripts/demo.sh --clean  remove the demo container
set -euo pipefail
cd "$(dirname "$0")/.."
name=lightweb-demo
port=${LIGHTWEB_DEMO_PORT:-8080}

if [ "${1:-}" = "--clean" ]; then
  podman rm -f "$name" >/dev/null 2>&1 || true
  exit 0
fi

./scripts/bootstrap.sh
./scripts/build-test-images.sh
source scripts/env.sh

if ! podman container exists "$name"; then
  echo "==> starting $name (Debian 12, systemd) with port $port -> 80"
  podman run -d --name "$name" --hostname "$name" --runtime=runc --systemd=always \
    --ulimit nofile=8192:8192 --ulimit nproc=4096:4096 \
    -p "127.0.0.1:$port:80" localhost/lightweb-test:debian12 /sbin/init >/dev/null
fi
podman start "$name" >/dev/null
for _ in $(seq 30); do
  podman exec "$name" systemctl is-system-running 2>/dev/null | grep -qE 'running|degraded' && break
  sleep 1
done

echo "==> ansible-playbook -i inventories/demo/hosts.yml site.yml"
# The demo host has no PyPI access of its own: wheels are prepared here.
ansible-playbook -i inventories/demo/hosts.yml site.yml -e webpy_app_pip_mode=wheels

echo
echo "==> curl http://127.0.0.1:$port/"
for _ in $(seq 20); do
  curl -fsS "http://127.0.0.1:$port/" && break
  sleep 1
done
echo
echo "==> curl -I http://127.0.0.1:$port/sta/style.css  (served by lighttpd, not the app)"
curl -fsSI "http://127.0.0.1:$port/sta/style.css"
echo "The stack is up: open http://127.0.0.1:$port/ ; remove it with scripts/demo.sh --clean"
