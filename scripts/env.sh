# Source this to use the pinned toolchain and this checkout as lightweb.webpy.
_lightweb_repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export PATH="$_lightweb_repo/.venv/bin:$PATH"
export ANSIBLE_COLLECTIONS_PATH="$_lightweb_repo/.collections/dev:$_lightweb_repo/.collections/vendor"
export ANSIBLE_CONFIG="$_lightweb_repo/ansible.cfg"
export MOLECULE_PODMAN_EXECUTABLE=podman
unset _lightweb_repo
