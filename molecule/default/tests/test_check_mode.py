"""A check run (`ansible-playbook --check`) tells what a real run would
change and changes nothing: on a new host, on the host as the roles left it,
and on one changed by hand."""

import copy
import re

import pytest

from lightweb_testlib import exported_inventory, file_checksum, host_address, podman, run_playbook, \
    run_playbook_with_inventory, wait_for

HOSTS = ["lightweb-single-debian12", "lightweb-single-debian13"]
NEW_HOST = "lightweb-check-new"
CONFIG = "/etc/lighttpd/lighttpd.conf"
# What the roles write to, installed packages and users included. Not the
# journal, which systemd writes to on its own.
WATCHED = "/etc /srv /usr /var/lib/dpkg /var/lib/apt /var/cache /var/log"


def changed_count(result, name):
    recap = re.search(r"^%s\s*:\s*ok=\d+\s+changed=(\d+)\s+unreachable=0\s+failed=0" % re.escape(name),
                      result.stdout, re.MULTILINE)
    assert recap, result.stdout[-3000:] + result.stderr[-3000:]
    return int(recap.group(1))


def snapshot(container):
    """Every file and directory under WATCHED, with its size, mode, owner and mtime."""
    return podman("exec", container, "sh", "-c",
                  "find %s -xdev -path /var/log/journal -prune -o -printf '%%p %%s %%m %%u:%%g %%T@\\n' | sort"
                  % WATCHED).stdout


@pytest.fixture(params=HOSTS)
def new_host(request):
    """A host never provisioned, of the image and settings of a scenario host.
    Yields both names."""
    image = podman("inspect", "--format", "{{.ImageName}}", request.param).stdout.strip()
    podman("rm", "-f", "-t", "0", NEW_HOST, check=False)
    podman("run", "-d", "--runtime=runc", "--name", NEW_HOST, "--hostname", NEW_HOST, "--systemd=always",
           "--ulimit", "nofile=8192:8192", "--ulimit", "nproc=4096:4096", image, "/sbin/init")
    try:
        podman("exec", NEW_HOST, "systemctl", "is-system-running", "--wait", check=False, timeout=180)
        yield NEW_HOST, request.param
    finally:
        podman("rm", "-f", "-t", "0", NEW_HOST, check=False)


def test_a_check_run_on_a_new_host_tells_what_it_would_do_and_changes_nothing(new_host, tmp_path):
    new_host, like = new_host
    inventory = exported_inventory()
    standalone = inventory["all"]["children"]["standalone"]["hosts"]
    standalone[new_host] = copy.deepcopy(standalone[like])
    before = snapshot(new_host)

    result = run_playbook_with_inventory(inventory, new_host, "playbooks/site.yml", tmp_path, "--check")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert changed_count(result, new_host) > 20
    assert "Install lighttpd packages" in result.stdout
    after = snapshot(new_host)
    assert after == before, [line for line in after.splitlines() if line not in before.splitlines()][:20]


def test_a_check_run_finds_a_change_made_by_hand_and_leaves_it(host):
    name = host.backend.host
    result = run_playbook(name, "--check")
    assert changed_count(result, name) == 0, result.stdout[-3000:]

    config = file_checksum(host, CONFIG)
    host.check_output("echo '# by hand' >> %s", CONFIG)
    edited = file_checksum(host, CONFIG)
    try:
        result = run_playbook(name, "--check", "--diff")
        assert changed_count(result, name) > 0, result.stdout[-3000:]
        assert "-# by hand" in result.stdout
        assert file_checksum(host, CONFIG) == edited
    finally:
        put_right = run_playbook(name)
    assert put_right.returncode == 0, put_right.stdout[-3000:] + put_right.stderr[-3000:]
    assert file_checksum(host, CONFIG) == config
    wait_for(host_address(host))
