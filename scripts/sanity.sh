#!/usr/bin/env bash
# ansible-test sanity for the collection. ansible-test needs the collection at
# .../ansible_collections/lightweb/webpy inside a git work tree, so the files
# git knows (tracked, plus untracked ones not ignored) are copied there first.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh

# ansible-test bootstraps pip in each sanity venv with a script it would
# download; the stand-in from shared/tools installs pip from ensurepip instead.
cache=~/.ansible/test/cache
if [ ! -f "$cache/get_pip_24_2.py" ]; then
  for candidate in "${LIGHTWEB_GET_PIP:-}" ../shared/tools/ansible-test-get-pip.py; do
    if [ -n "$candidate" ] && [ -f "$candidate" ]; then
      mkdir -p "$cache" && cp "$candidate" "$cache/get_pip_24_2.py"
      break
    fi
  done
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
dest=$work/ansible_collections/lightweb/webpy
mkdir -p "$dest"
git ls-files -z --cached --others --exclude-standard | while IFS= read -r -d '' f; do
  [ -e "$f" ] || continue
  mkdir -p "$dest/$(dirname "$f")"
  cp -p "$f" "$dest/$f"
done
cd "$dest"
git init -q && git add -A && git -c user.name=sanity -c user.email=sanity@localhost commit -qm sanity
ansible-test sanity --python 3.11 --color no "$@"
