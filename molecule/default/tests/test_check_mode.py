"""A check run (`ansible-playbook --check`) tells what a real run would
change and changes nothing: on a new host, on the host as the roles left it,
and on one changed by hand."""

import copy
import json

import pytest

from lightweb_testlib import exported_inventory, file_checksum, file_tree, host_address, new_host_like, \
    recap_changed, run_playbook, run_playbook_with_inventory, wait_for

NEW_HOST = "lightweb-check-new"
CONFIG = "/etc/lighttpd/lighttpd.conf"


@pytest.mark.parametrize("like", ["lightweb-single-debian12", "lightweb-single-debian13"])
def test_a_check_run_on_a_new_host_tells_what_it_would_do_and_changes_nothing(like, tmp_path):
    inventory = exported_inventory()
    standalone = inventory["all"]["children"]["standalone"]["hosts"]
    standalone[NEW_HOST] = copy.deepcopy(standalone[like])
    with new_host_like(NEW_HOST, like):
        before = file_tree(NEW_HOST)
        result = run_playbook_with_inventory(inventory, NEW_HOST, "playbooks/site.yml", tmp_path, "--check")
        assert recap_changed(result, NEW_HOST) > 20
        assert "Install lighttpd packages" in result.stdout
        after = file_tree(NEW_HOST)
    assert after == before, [line for line in after if line not in before][:20]


def test_a_check_run_finds_a_change_made_by_hand_and_leaves_it(host):
    name = host.backend.get_hostname()
    assert recap_changed(run_playbook(name, "--check"), name) == 0

    config = file_checksum(host, CONFIG)
    host.check_output("echo '# by hand' >> %s", CONFIG)
    edited = file_checksum(host, CONFIG)
    try:
        result = run_playbook(name, "--check", "--diff")
        assert recap_changed(result, name) > 0
        assert "-# by hand" in result.stdout
        assert file_checksum(host, CONFIG) == edited
    finally:
        put_right = run_playbook(name)
    assert put_right.returncode == 0, put_right.stdout[-3000:] + put_right.stderr[-3000:]
    assert file_checksum(host, CONFIG) == config
    wait_for(host_address(host))


def test_ipv6_follows_a_specific_listen_address(host):
    # 0.0.0.0 gets [::], 127.0.0.1 gets [::1], one interface's address no
    # IPv6 socket at all. A check run shows the socket unit each would get.
    name = host.backend.get_hostname()
    assert "ListenStream=[::]:80" in host.file("/etc/systemd/system/lighttpd.socket").content_string
    loopback = run_playbook(name, "--check", "--diff", "-e", json.dumps({"lighttpd_listen_address": "127.0.0.1"}))
    assert loopback.returncode == 0, loopback.stdout[-3000:]
    assert "+ListenStream=127.0.0.1:80" in loopback.stdout and "+ListenStream=[::1]:80" in loopback.stdout
    assert "-ListenStream=[::]:80" in loopback.stdout
    interface = run_playbook(name, "--check", "--diff", "-e", json.dumps({"lighttpd_listen_address": host_address(host)}))
    assert interface.returncode == 0, interface.stdout[-3000:]
    assert "-ListenStream=[::]:80" in interface.stdout
    assert "+ListenStream=[" not in interface.stdout
    # Bound even before the interface has its address (sockets start early).
    assert "+FreeBind=true" in interface.stdout and "+FreeBind=true" not in loopback.stdout
