"""Security defaults of the farm: TLS on the front-ends, headers, limits,
status pages for monitoring hosts only, sandboxed app servers."""

import socket
import ssl

import pytest
import testinfra

from lightweb_testlib import assert_default_security_headers, http, inventory_path

FRONTEND_IPS = {"lightweb-fe1": "10.89.42.11", "lightweb-fe2": "10.89.42.12"}
APPSERVERS = ["lightweb-app1", "lightweb-app2", "lightweb-app3"]
MONITORING_HOST = "lightweb-app1"  # listed in lighttpd_status_allowed
UNIT = "webpy-example"

testinfra_hosts = ["ansible://lightweb-fe1"]


def node(name):
    return testinfra.get_host("ansible://%s" % name, ansible_inventory=inventory_path())


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
    for path in ("/srv/webpy/app/app.py", "/srv/webpy/app", "/srv/webpy/venv/bin/python3"):
        result = host.run("setpriv --reuid=webpy --regid=webpy --clear-groups test -w %s", path)
        assert result.rc != 0, path
    exposure = host.check_output("systemd-analyze security %s.service --no-pager | tail -n 1" % UNIT)
    level = float(exposure.split("level for %s.service:" % UNIT)[1].split()[0])
    print("%s: systemd-analyze exposure %.1f" % (appserver, level))
    assert level < 5.0, exposure  # systemd's "OK" band or better
