"""Security defaults of the farm: TLS on the front-ends, headers, limits,
status pages for monitoring hosts only, sandboxed app servers."""

import socket
import ssl

import pytest
import testinfra

from lightweb_testlib import fcgi_processes, http, inventory_path

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
        assert headers["X-Content-Type-Options"] == "nosniff", path
        assert headers["X-Frame-Options"] == "SAMEORIGIN", path
        assert headers["Referrer-Policy"] == "strict-origin-when-cross-origin", path
        assert "default-src 'self'" in headers["Content-Security-Policy"], path
        assert headers["Strict-Transport-Security"] == "max-age=31536000", path
        assert headers["Server"] == "lighttpd", path  # no version


@pytest.mark.parametrize("frontend", sorted(FRONTEND_IPS))
def test_oversized_requests_are_refused(frontend):
    base = "https://" + FRONTEND_IPS[frontend]
    resp = http(base, "/echo", method="POST", body=b"message=" + b"x" * (1024 * 1024 + 1))
    assert resp.status == 413
    assert http(base, "/echo", method="POST", data={"message": "small"}).status == 200


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
def test_app_server_sandbox_keeps_the_app_from_writing_outside_its_log_dir(appserver):
    host = node(appserver)
    worker = fcgi_processes(host)[0].pid
    # Inside the service's own mount namespace even root finds the system read-only.
    for path in ("/srv/webpy/app/planted.py", "/srv/webpy/venv/planted", "/etc/planted", "/root/planted"):
        result = host.run("nsenter --target %s --mount touch %s", str(worker), path)
        assert result.rc != 0, path
        assert not host.file(path).exists
    log_probe = host.run("nsenter --target %s --mount touch /var/log/webpy-example/probe", str(worker))
    assert log_probe.rc == 0, log_probe.stderr
    host.run("rm -f /var/log/webpy-example/probe")
    exposure = host.check_output("systemd-analyze security %s.service --no-pager | tail -n 1" % UNIT)
    level = float(exposure.split("level for %s.service:" % UNIT)[1].split()[0])
    print("%s: systemd-analyze exposure %.1f" % (appserver, level))
    assert level <= 3.0, exposure
