"""Security defaults of the farm: TLS on the front-ends, headers, limits,
status pages for monitoring hosts only, sandboxed app servers."""

import copy
import socket
import ssl

import pytest
from lightweb_testlib import (
    assert_default_security_headers, exported_inventory, http, node, recap_changed, run_playbook, run_playbook_with_inventory,
    steps_run, tcp_connects, under_load,
)

FRONTEND_IPS = {"lightweb-fe1": "10.89.42.11", "lightweb-fe2": "10.89.42.12"}
FRONTEND_URLS = {name: "https://" + ip for name, ip in FRONTEND_IPS.items()}
APPSERVERS = ["lightweb-app1", "lightweb-app2", "lightweb-app3"]
MONITORING_HOST = "lightweb-app1"  # listed in lighttpd_status_allowed
UNIT = "webpy-example"
TLS_DIR = "/etc/lighttpd/tls"  # the role's own pair
KEY_GROUP = "lightweb-keys"  # shares a given key, as ssl-cert does on Debian

testinfra_hosts = ["ansible://lightweb-fe1"]


def _handshake(address, version):
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_ciphers("ALL:@SECLEVEL=0")  # let the client offer old protocols
    context.minimum_version = context.maximum_version = version
    with socket.create_connection((address, 443), timeout=5) as raw:
        with context.wrap_socket(raw) as tls:
            return tls.version()


@pytest.mark.parametrize("frontend", sorted(FRONTEND_IPS))
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_only_tls_1_2_and_1_3_are_accepted(frontend):
    address = FRONTEND_IPS[frontend]
    assert _handshake(address, ssl.TLSVersion.TLSv1_2) == "TLSv1.2"
    assert _handshake(address, ssl.TLSVersion.TLSv1_3) == "TLSv1.3"
    for old in (ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1):
        with pytest.raises(ssl.SSLError, match="PROTOCOL_VERSION|UNSUPPORTED_PROTOCOL|NO_PROTOCOLS"):
            _handshake(address, old)


@pytest.mark.parametrize("frontend", sorted(FRONTEND_IPS))
def test_security_headers_on_app_and_static_responses(frontend):
    base = "https://" + FRONTEND_IPS[frontend]
    for path in ("/", "/sta/style.css", "/no-such-page"):
        headers = http(base, path).headers
        assert_default_security_headers(headers, path)
        assert headers["Strict-Transport-Security"] == "max-age=31536000", path


@pytest.mark.parametrize("frontend", sorted(FRONTEND_IPS))
def test_key_is_readable_by_root_only(frontend):
    host = node(frontend)
    key = host.file("/etc/lighttpd/tls/key.pem")
    assert key.user == "root" and key.group == "root" and key.mode == 0o600
    assert host.file("/etc/lighttpd/tls").mode == 0o700


def test_a_reload_that_would_fail_is_refused_and_lighttpd_keeps_serving():
    # A SIGUSR1 reload re-reads the root-only key as www-data and would stop
    # lighttpd; the unit checks that first and refuses the reload instead.
    host = node("lightweb-fe1")
    pid = host.check_output("systemctl show -p MainPID --value lighttpd.service")
    assert host.run("systemctl reload lighttpd.service").rc != 0
    assert host.check_output("systemctl show -p MainPID --value lighttpd.service") == pid
    assert http(FRONTEND_URLS["lightweb-fe1"], "/").status == 200
    # A restart does apply changes, and lighttpd.socket keeps the ports open.
    with under_load(FRONTEND_URLS["lightweb-fe1"]) as results:
        host.run_expect([0], "systemctl restart lighttpd.service")
    assert host.check_output("systemctl show -p MainPID --value lighttpd.service") != pid
    assert results and all(r == 200 for r in results), [r for r in results if r != 200][:5]


def _served_certificate(address):
    return ssl.DER_cert_to_PEM_cert(ssl.PEM_cert_to_DER_cert(ssl.get_server_certificate((address, 443))))


def _new_pair(host, directory, name):
    """A key pair made on the host; returns the certificate's PEM text."""
    host.run_expect([0], "install -d -m 0700 %s" % directory)
    host.run_expect([0], "openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=%s "
                         "-keyout %s/key.pem -out %s/cert.pem" % (name, directory, directory))
    return host.check_output("cat %s/cert.pem" % directory)


def _same_certificate(pem_a, pem_b):
    return ssl.PEM_cert_to_DER_cert(pem_a) == ssl.PEM_cert_to_DER_cert(pem_b)


def test_certificate_given_as_content_or_as_host_paths_is_served(tmp_path):
    name, address = "lightweb-fe2", FRONTEND_IPS["lightweb-fe2"]
    host = node(name)
    full = exported_inventory()

    def inventory_with(**tls_vars):
        inventory = copy.deepcopy(full)
        inventory["all"]["children"]["frontends"]["hosts"][name].update(tls_vars)
        return inventory

    def provision(**tls_vars):
        with under_load(FRONTEND_URLS[name]) as results:
            result = run_playbook_with_inventory(inventory_with(**tls_vars), name, "playbooks/site.yml", tmp_path)
        assert result.returncode == 0, result.stdout[-3000:]
        failed = [r for r in results if r != 200]
        print("requests while the certificate changed: %d sent, %d failed" % (len(results), len(failed)))
        assert results and not failed, failed[:5]

    try:
        # As PEM content, the vault-friendly way: written by the role.
        content = _new_pair(host, "/root/lightweb-tls-content", "lightweb-content")
        as_content = dict(lighttpd_tls_self_signed=False, lighttpd_tls_certificate=content,
                          lighttpd_tls_private_key=host.check_output("cat /root/lightweb-tls-content/key.pem"))
        provision(**as_content)
        assert _same_certificate(_served_certificate(address), content)
        assert host.check_output("cat /etc/lighttpd/tls/cert.pem") == content
        # The files written from the content are compared with it: a re-run
        # finds lighttpd in place and runs none of its steps.
        again = run_playbook_with_inventory(inventory_with(**as_content), name, "playbooks/site.yml", tmp_path)
        assert again.returncode == 0, again.stdout[-3000:]
        assert recap_changed(again, name) == 0, again.stdout[-3000:]
        assert steps_run(again) == [], again.stdout[-3000:]
        # As paths of files already on the host, links to the files as a
        # certificate client keeps them (live/ -> archive/).
        given = _new_pair(host, "/etc/ssl/lightweb-given/archive", "lightweb-given")
        # Shared with a group, as Debian's ssl-cert group shares keys: the role leaves that as it is.
        host.run_expect([0], "groupadd -f %s && chgrp %s /etc/ssl/lightweb-given/archive/key.pem"
                             " && chmod 0640 /etc/ssl/lightweb-given/archive/key.pem" % (KEY_GROUP, KEY_GROUP))
        host.run_expect([0], "install -d -m 0755 /etc/ssl/lightweb-given/live && cd /etc/ssl/lightweb-given/live"
                             " && ln -s ../archive/cert.pem cert.pem && ln -s ../archive/key.pem key.pem")
        provision(lighttpd_tls_self_signed=False, lighttpd_tls_certificate_file="/etc/ssl/lightweb-given/live/cert.pem",
                  lighttpd_tls_private_key_file="/etc/ssl/lightweb-given/live/key.pem")
        assert _same_certificate(_served_certificate(address), given)
        key = host.file("/etc/ssl/lightweb-given/archive/key.pem")
        assert (key.user, key.group, key.mode) == ("root", KEY_GROUP, 0o640)
        assert host.file("/etc/ssl/lightweb-given/live/key.pem").is_symlink
        # The links are read through: a re-run finds everything in place.
        again = run_playbook_with_inventory(inventory_with(lighttpd_tls_self_signed=False,
                                                           lighttpd_tls_certificate_file="/etc/ssl/lightweb-given/live/cert.pem",
                                                           lighttpd_tls_private_key_file="/etc/ssl/lightweb-given/live/key.pem"),
                                            name, "playbooks/site.yml", tmp_path)
        assert again.returncode == 0, again.stdout[-3000:]
        assert recap_changed(again, name) == 0, again.stdout[-3000:]
    finally:
        # Back to the scenario's self-signed pair.
        host.run_expect([0], "rm -rf /etc/lighttpd/tls")
        result = run_playbook_with_inventory(full, name, "playbooks/site.yml", tmp_path)
        host.run_expect([0], "rm -rf /root/lightweb-tls-content /etc/ssl/lightweb-given")
        host.run("groupdel %s" % KEY_GROUP)
    assert result.returncode == 0, result.stdout[-3000:]
    assert name in host.check_output("openssl x509 -noout -subject -in /etc/lighttpd/tls/cert.pem")
    assert _same_certificate(_served_certificate(address), host.check_output("cat /etc/lighttpd/tls/cert.pem"))


def test_a_self_signed_certificate_near_its_end_is_made_again():
    name = "lightweb-fe1"
    host = node(name)
    # The role's pair, as if made 824 days ago: one day left.
    host.run_expect([0], "openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=%s -keyout %s/key.pem -out %s/cert.pem"
                    % (name, TLS_DIR, TLS_DIR))

    result = run_playbook(name)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert recap_changed(result, name) > 0
    certificate = host.check_output("cat %s/cert.pem" % TLS_DIR)
    assert host.run("openssl x509 -checkend %d -noout -in %s/cert.pem" % (800 * 86400, TLS_DIR)).rc == 0, certificate
    assert _same_certificate(_served_certificate(FRONTEND_IPS[name]), certificate)
    key = host.file(TLS_DIR + "/key.pem")
    assert (key.user, key.group, key.mode) == ("root", "root", 0o600)


_FETCH_STATISTICS = (
    "import ssl, urllib.request, urllib.error\n"
    "ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE\n"
    "try:\n"
    "    r = urllib.request.urlopen('https://%s/server-statistics', context=ctx, timeout=5)\n"
    "    print(r.status); print(r.read().decode())\n"
    "except urllib.error.HTTPError as e:\n"
    "    print(e.code)\n"
)


@pytest.mark.parametrize("frontend", sorted(FRONTEND_IPS))
def test_status_pages_serve_monitoring_hosts_only(frontend):
    address = FRONTEND_IPS[frontend]
    # From this machine and from an app server that is not a monitoring host.
    assert http("https://" + address, "/server-statistics").status == 403
    assert http("https://" + address, "/server-status").status == 403
    assert node("lightweb-app2").check_output("python3 -c %s", _FETCH_STATISTICS % address) == "403"
    # From the monitoring host and from the front-end itself: backend counters.
    for viewer, target in ((MONITORING_HOST, address), (frontend, "127.0.0.1")):
        out = node(viewer).check_output("python3 -c %s", _FETCH_STATISTICS % target).splitlines()
        assert out[0] == "200", (viewer, out[:3])
        for app in APPSERVERS:
            assert any(line.startswith("gw.backend.%s.0.died:" % app) for line in out), (viewer, app)


@pytest.mark.parametrize("appserver", APPSERVERS)
def test_app_server_unit_is_sandboxed_and_cannot_touch_its_code(appserver):
    host = node(appserver)
    props = dict(line.split("=", 1) for line in host.check_output(
        "systemctl show %s.service -p User -p NoNewPrivileges -p ProtectSystem -p ProtectHome -p PrivateTmp"
        " -p PrivateDevices -p ReadWritePaths -p CapabilityBoundingSet" % UNIT).splitlines())
    assert props["User"] == "webpy"
    assert props["NoNewPrivileges"] == "yes"
    assert props["ProtectSystem"] == "strict"
    assert props["ProtectHome"] == "yes"
    assert props["PrivateTmp"] == "yes"
    assert props["PrivateDevices"] == "yes"
    assert props["ReadWritePaths"] == "/var/log/webpy-example"
    assert props["CapabilityBoundingSet"] == ""
    for path in ("/srv/webpy/current/app.py", "/srv/webpy/current/", "/srv/webpy/current/venv/bin/python3",
                 "/srv/webpy/bin/lightweb_fcgi.py"):
        assert host.file(path).exists, path
        result = host.run("setpriv --reuid=webpy --regid=webpy --clear-groups test -w %s", path)
        assert result.rc != 0, path
    exposure = host.check_output("systemd-analyze security %s.service --no-pager | tail -n 1" % UNIT)
    level = float(exposure.split("level for %s.service:" % UNIT)[1].split()[0])
    print("%s: systemd-analyze exposure %.1f" % (appserver, level))
    assert level < 5.0, exposure  # systemd's "OK" band or better


def test_the_port_filter_outlives_a_restart_or_reload_of_nftables_and_falls_with_its_stop():
    # nftables.service flushes the whole ruleset when it starts or reloads:
    # the app's filter is applied again each time. Stopping nftables stops
    # the filter, and the FastCGI socket with it: never open unfiltered.
    name, address = "lightweb-app1", "10.89.42.21"
    host, frontend, other = node(name), node("lightweb-fe1"), node("lightweb-client")
    was_active = host.run("systemctl is-active nftables.service").rc == 0
    table = "nft list table inet lightweb_webpy_example"
    try:
        for action in ("restart", "reload"):
            host.run_expect([0], "systemctl %s nftables.service" % action)
            host.run_expect([0], table)
            assert tcp_connects(frontend, address, 9000), action
            assert not tcp_connects(other, address, 9000), action
        host.run_expect([0], "systemctl stop nftables.service")
        assert host.run(table).rc != 0
        assert not host.service(UNIT + ".socket").is_running
        assert host.check_output("ss -Hltn 'sport = :9000'") == ""
        assert not tcp_connects(frontend, address, 9000)
    finally:
        host.run_expect([0], "systemctl %s nftables.service" % ("start" if was_active else "stop"))
        host.run_expect([0], "systemctl start %s.socket %s.service" % (UNIT, UNIT))
    host.run_expect([0], table)
    assert tcp_connects(frontend, address, 9000)
    assert not tcp_connects(other, address, 9000)
