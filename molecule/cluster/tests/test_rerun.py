"""A re-run of site.yml compares each host of the farm with what the roles
deploy: what was changed by hand on an app server or a front-end is put
right, and then a run changes nothing."""

import re
import ssl

from lightweb_testlib import file_checksum, node, recap_changed, run_playbook, steps_run, wait_for

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
    assert steps_run(again) == [], again.stdout[-3000:]


def test_a_changed_socket_unit_moves_the_listening_port_back():
    # A re-run that rewrites the socket unit restarts the socket too, not
    # only the app: a port left open by hand would be outside the filter.
    app = node(APPSERVER)
    socket_unit = "/etc/systemd/system/%s.socket" % UNIT
    original = file_checksum(app, socket_unit)
    app.check_output("sed -i 's/^ListenStream=\\(.*\\):9000$/ListenStream=\\1:9099/' %s"
                     " && systemctl daemon-reload && systemctl restart %s.socket %s.service", socket_unit, UNIT, UNIT)
    assert ":9099" in app.check_output("ss -Hltn 'sport = :9099'")

    result = run_playbook(APPSERVER)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert file_checksum(app, socket_unit) == original
    assert app.check_output("ss -Hltn 'sport = :9099'") == ""
    assert ":9000" in app.check_output("ss -Hltn 'sport = :9000'")
    wait_for(FRONTEND_URL)


def test_a_run_with_the_tls_tag_applies_a_new_certificate_completely():
    # --tags lighttpd_tls restarts lighttpd onto a new certificate and
    # records it: the next full run has nothing left to do.
    frontend = node(FRONTEND)
    before = frontend.check_output("cat /etc/lighttpd/tls/cert.pem")
    frontend.check_output("rm /etc/lighttpd/tls/cert.pem /etc/lighttpd/tls/key.pem")
    tagged = run_playbook(FRONTEND, "--tags", "lighttpd_tls")
    assert tagged.returncode == 0, tagged.stdout[-3000:] + tagged.stderr[-3000:]
    renewed = frontend.check_output("cat /etc/lighttpd/tls/cert.pem")
    assert renewed != before
    served = ssl.get_server_certificate(("10.89.42.12", 443))
    assert ssl.PEM_cert_to_DER_cert(served) == ssl.PEM_cert_to_DER_cert(renewed)

    again = run_playbook(FRONTEND)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert recap_changed(again, FRONTEND) == 0, again.stdout[-3000:]
