"""A re-run of site.yml compares each host of the farm with what the roles
deploy: what was changed by hand on an app server or a front-end is put
right, and then a run changes nothing."""

import re

from lightweb_testlib import file_checksum, node, run_playbook, wait_for

APPSERVER = "lightweb-app2"
FRONTEND = "lightweb-fe2"
FRONTEND_URL = "https://10.89.42.12"
UNIT = "webpy-example"
UNIT_FILE = "/etc/systemd/system/%s.service" % UNIT
PORT_FILTER = "/etc/lightweb/webpy-example.nft"
TLS_KEY = "/etc/lighttpd/tls/key.pem"
SOCKET_UNIT = "/etc/systemd/system/lighttpd.socket"

# Run once, not once per inventory host: the test picks its hosts.
testinfra_hosts = ["ansible://lightweb-fe1"]


def changed_counts(result):
    counts = dict(re.findall(r"^(\S+)\s*:\s*ok=\d+\s+changed=(\d+)", result.stdout, re.MULTILINE))
    assert set(counts) == {APPSERVER, FRONTEND}, result.stdout[-3000:] + result.stderr[-3000:]
    return {name: int(count) for name, count in counts.items()}


def test_a_rerun_puts_right_what_was_changed_by_hand_on_the_farm_then_changes_nothing():
    app, frontend = node(APPSERVER), node(FRONTEND)
    unit, port_filter = file_checksum(app, UNIT_FILE), file_checksum(app, PORT_FILTER)
    socket_unit = file_checksum(frontend, SOCKET_UNIT)
    app.check_output(
        "echo '# by hand' >> %s && rm %s && systemctl disable %s.socket && systemctl stop %s.service",
        UNIT_FILE, PORT_FILTER, UNIT, UNIT)
    frontend.check_output("chmod 644 %s && echo '# by hand' >> %s", TLS_KEY, SOCKET_UNIT)

    result = run_playbook("%s,%s" % (APPSERVER, FRONTEND))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert all(count > 0 for count in changed_counts(result).values()), result.stdout[-3000:]
    assert file_checksum(app, UNIT_FILE) == unit
    assert file_checksum(app, PORT_FILTER) == port_filter
    assert app.service(UNIT + ".socket").is_enabled
    assert app.service(UNIT + ".service").is_running
    assert frontend.file(TLS_KEY).mode == 0o600
    assert file_checksum(frontend, SOCKET_UNIT) == socket_unit
    wait_for(FRONTEND_URL)

    again = run_playbook("%s,%s" % (APPSERVER, FRONTEND))
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert changed_counts(again) == {APPSERVER: 0, FRONTEND: 0}, again.stdout[-3000:]
