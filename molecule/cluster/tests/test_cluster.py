"""The farm: lighttpd front-ends spreading requests over web.py app servers."""

import copy
import re
import socket
import time

import pytest
from lightweb_testlib import (
    EXAMPLE_APP, SCHED_BATCH, boot_ordering_cycles, exported_inventory, fcgi_processes, http, new_host_like, node,
    podman, recap_changed, run_playbook_with_inventory, serving_hosts, tcp_connects, under_load, wait_for,
)

FRONTEND_IPS = {"lightweb-fe1": "10.89.42.11", "lightweb-fe2": "10.89.42.12"}
# Front-ends serve HTTPS (plain HTTP only redirects there).
FRONTENDS = {name: "https://" + ip for name, ip in FRONTEND_IPS.items()}
APPSERVERS = {"lightweb-app1": "10.89.42.21", "lightweb-app2": "10.89.42.22", "lightweb-app3": "10.89.42.23"}
FASTCGI_PORT = 9000
UNIT = "webpy-example"
PROBE = "/srv/webpy/bin/lightweb-fcgi-probe"
# app3 listens on "::" (molecule.yml).
HEALTH_ADDRESS = {"lightweb-app1": "127.0.0.1:9000", "lightweb-app2": "127.0.0.1:9000", "lightweb-app3": "[::1]:9000"}

# Run once, not once per inventory host: the tests pick their hosts.
testinfra_hosts = ["ansible://lightweb-fe1"]


@pytest.mark.parametrize("frontend", sorted(FRONTENDS))
def test_every_frontend_serves_the_page_and_static_tree(frontend):
    addr = FRONTENDS[frontend]
    page = wait_for(addr, "/")
    assert "Hello from web.py behind lighttpd" in page.text
    css = http(addr, "/sta/style.css")
    assert css.status == 200 and css.headers["Content-Type"].startswith("text/css")
    assert css.body == (EXAMPLE_APP / "sta" / "style.css").read_bytes()
    png = http(addr, "/sta/logo.png")
    assert png.body == (EXAMPLE_APP / "sta" / "logo.png").read_bytes()
    assert http(addr, "/app.py").status == 403
    redirect = http(FRONTEND_IPS[frontend], "/echo?x=1")
    assert redirect.status == 308
    assert redirect.headers["Location"] == "%s/echo?x=1" % addr


@pytest.mark.parametrize("frontend", sorted(FRONTENDS))
def test_requests_through_one_frontend_reach_every_app_server(frontend):
    seen = serving_hosts(FRONTENDS[frontend], 60)
    assert set(seen) == set(APPSERVERS), seen
    assert min(seen.values()) >= 10, seen


@pytest.mark.parametrize("frontend", sorted(FRONTENDS))
def test_frontend_lists_every_app_server_as_a_labelled_backend(frontend):
    config = node(frontend).file("/etc/lighttpd/lighttpd.conf").content_string
    assert 'fastcgi.balance = "round-robin"' in config
    for name, addr in APPSERVERS.items():
        assert '"%s" => (' % name in config
        assert '"host"            => "%s"' % addr in config
    assert "bin-path" not in config


@pytest.mark.parametrize("appserver", sorted(APPSERVERS))
def test_app_server_runs_the_app_under_systemd_unprivileged(appserver):
    host = node(appserver)
    assert host.service(UNIT + ".socket").is_running
    assert host.service(UNIT + ".service").is_running
    assert host.service(UNIT + ".service").is_enabled
    procs = fcgi_processes(host)
    assert len(procs) == 1 + 2  # parent + webpy_app_workers
    assert {p.user for p in procs} == {"webpy"}
    assert {p.nice for p in procs} == {5}  # webpy_app_nice
    assert {p.policy for p in procs} == {SCHED_BATCH}  # webpy_app_cpu_policy
    main_pid = int(host.check_output("systemctl show -p MainPID --value %s.service" % UNIT))
    # webpy_app_environment in molecule.yml, as the app sees it.
    # Read as the app's account: root here lacks CAP_SYS_PTRACE.
    environ = host.check_output("setpriv --reuid=webpy --regid=webpy --clear-groups cat /proc/%d/environ | tr '\\0' '\\n'"
                                % main_pid).splitlines()
    assert 'LIGHTWEB_DSN=postgres://app:p%40ss@db/app?note="a b"&dir=C:\\temp' in environ, environ
    assert sorted(p.ppid for p in procs if p.pid != main_pid) == [main_pid, main_pid]
    listening = host.check_output("ss -Hltn 'sport = :%d'" % FASTCGI_PORT)
    # molecule.yml: app3 runs flup on a dual-stack socket, the others the
    # default, uWSGI, on IPv4.
    if appserver == "lightweb-app3":
        assert {p.server for p in procs} == {"flup"}
        assert host.check_output("systemctl show -p KillMode --value %s.service" % UNIT) == "control-group"
        assert "0.0.0.0:%d" % FASTCGI_PORT not in listening
        assert "*:%d" % FASTCGI_PORT in listening or "[::]:%d" % FASTCGI_PORT in listening, listening
        assert host.check_output("cat /proc/sys/net/ipv6/bindv6only") == "0"
        # flup compares its peers' addresses as text: on this socket the
        # nftables filter alone decides (the front-ends' requests reach it).
        assert "FCGI_WEB_SERVER_ADDRS" not in host.check_output("systemctl show -p Environment %s.service" % UNIT)
    else:
        assert "0.0.0.0:%d" % FASTCGI_PORT in listening, listening
        assert {p.server for p in procs} == {"uwsgi"}
        # Only the master gets SIGTERM: it lets its workers finish.
        assert host.check_output("systemctl show -p KillMode --value %s.service" % UNIT) == "mixed"
    # App servers do not serve the static tree; the front-ends do.
    assert not host.file("/srv/lightweb/htdocs/sta").exists
    assert not host.package("lighttpd").is_installed


@pytest.mark.parametrize("name", sorted({**FRONTEND_IPS, **APPSERVERS}))
def test_every_unit_starts_at_boot_in_order(name):
    # The port filter goes up before the FastCGI socket, which is an early
    # unit: a cycle there left an app server deaf after a reboot.
    assert not boot_ordering_cycles(node(name))


def test_fastcgi_port_refuses_everyone_but_the_frontends():
    for target, addr in APPSERVERS.items():
        for frontend in FRONTENDS:
            assert tcp_connects(node(frontend), addr, FASTCGI_PORT), "%s -> %s" % (frontend, target)
        # Another app server is not a front-end.
        other = next(name for name in sorted(APPSERVERS) if name != target)
        assert not tcp_connects(node(other), addr, FASTCGI_PORT), "%s -> %s" % (other, target)
        # Neither is this machine, on the podman network.
        with pytest.raises(OSError):
            socket.create_connection((addr, FASTCGI_PORT), timeout=3).close()
        # Loopback on the app server itself is allowed (local health checks).
        assert tcp_connects(node(target), "127.0.0.1", FASTCGI_PORT)


def test_app_restart_fails_no_request():
    with under_load(FRONTENDS["lightweb-fe1"]) as results:
        for name in sorted(APPSERVERS):
            node(name).run_expect([0], "systemctl restart %s.service" % UNIT)
    failed = [r for r in results if r != 200]
    print("requests during app restarts: %d sent, %d failed" % (len(results), len(failed)))
    if failed:  # what the front-end said about it
        print(node("lightweb-fe1").run("tail -n 20 /var/log/lighttpd/error.log").stdout)
    assert len(results) > 50
    assert not failed, failed[:5]


def test_idle_app_server_stops_without_being_killed():
    # Workers share one listening socket; none may sit deaf to SIGTERM in
    # accept() until systemd's stop timeout kills it. Each restart comes once
    # the app answers: idle, not still loading.
    for name in sorted(APPSERVERS):
        host = node(name)
        since = host.check_output("date '+%Y-%m-%d %H:%M:%S'")
        for _restart in range(3):
            host.run_expect([0], "systemctl restart %s.service" % UNIT)
            host.run_expect([0], "for try in $(seq 50); do %s --connect %s --path /health --timeout 2 >/dev/null && exit 0;"
                            " sleep 0.2; done; exit 1", PROBE, HEALTH_ADDRESS[name])
        journal = host.check_output("journalctl --no-pager -u %s.service --since '%s'" % (UNIT, since))
        assert "timed out" not in journal and "Killing" not in journal, journal[-2000:]
        assert host.check_output("systemctl show -p Result --value %s.service" % UNIT) == "success"


def test_app_server_restarts_after_a_crash():
    host = node("lightweb-app3")
    main_pid = host.check_output("systemctl show -p MainPID --value %s.service" % UNIT)
    host.run_expect([0], "kill -9 %s" % main_pid)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        new_pid = host.check_output("systemctl show -p MainPID --value %s.service" % UNIT)
        if new_pid not in ("0", main_pid) and host.service(UNIT + ".service").is_running:
            break
        time.sleep(0.5)
    else:
        pytest.fail("the app server did not come back after a crash")
    assert "lightweb-app3" in serving_hosts(FRONTENDS["lightweb-fe2"], 30)


def _printed_under(stdout, header):
    """The lines a run printed under a task or handler header, up to the
    blank line that ends them."""
    found = re.search(r"^%s \**\n(.*?)^$" % re.escape(header), stdout, re.MULTILINE | re.DOTALL)
    assert found, header + "\n" + stdout[-3000:]
    return found.group(1)


def test_a_new_app_server_starts_its_app_once_and_checks_its_health(tmp_path):
    # Its units are new: the handlers leave them to "Enable and start",
    # which starts each of them once, with what was deployed; the app must
    # then answer its health check, as after a restart.
    name = "lightweb-new-app"
    inventory = exported_inventory()
    appservers = inventory["all"]["children"]["appservers"]["hosts"]
    appservers[name] = dict(copy.deepcopy(appservers["lightweb-app1"]), lightweb_address="10.89.42.43")
    with new_host_like(name, "lightweb-app1"):
        result = run_playbook_with_inventory(inventory, name, "playbooks/site.yml", tmp_path)
        assert recap_changed(result, name) > 10
        for handler in ("Apply the FastCGI port filter", "Forget the app's failed starts",
                        "Restart the app's FastCGI server"):
            printed = _printed_under(result.stdout, "RUNNING HANDLER [lightweb.webpy.webpy_app : %s]" % handler)
            assert "skipping: [%s]" % name in printed and "changed" not in printed, (handler, printed)
        started = _printed_under(result.stdout, "TASK [lightweb.webpy.webpy_app : service | Enable and start the "
                                                "filter, socket and app]")
        assert started.count("changed: [%s]" % name) == 3, started
        checked = _printed_under(result.stdout, "TASK [lightweb.webpy.webpy_app : health_check | Ask the app for "
                                                "its health path over FastCGI]")
        assert "ok: [%s]" % name in checked, checked
        journal = podman("exec", name, "journalctl", "--no-pager", "-o", "cat", "-u", UNIT + ".service").stdout
        assert len(re.findall(r"^Started ", journal, re.MULTILINE)) == 1, journal[-2000:]


def _without(inventory, group, name):
    edited = copy.deepcopy(inventory)
    edited["all"]["children"][group]["hosts"].pop(name)
    return edited


def test_scaling_follows_the_inventory(tmp_path):
    full = exported_inventory()
    # Remove an app server: re-running the front-end tier alone (--limit)
    # stops its traffic on every front-end. Both front-ends restart onto the
    # new configuration under load, and no request fails meanwhile.
    with under_load(*FRONTENDS.values()) as results:
        result = run_playbook_with_inventory(_without(full, "appservers", "lightweb-app3"), "frontends",
                                             "playbooks/site.yml", tmp_path)
    assert result.returncode == 0, result.stdout[-3000:]
    assert "RUNNING HANDLER [lightweb.webpy.lighttpd : Restart lighttpd]" in result.stdout
    failed = [r for r in results if r != 200]
    print("requests while the front-ends restart: %d sent, %d failed" % (len(results), len(failed)))
    assert len(results) > 50
    assert not failed, failed[:5]
    for addr in FRONTENDS.values():
        assert set(serving_hosts(addr, 30)) == {"lightweb-app1", "lightweb-app2"}
    # Add it back: every front-end sends it traffic again.
    result = run_playbook_with_inventory(full, "frontends", "playbooks/site.yml", tmp_path)
    assert result.returncode == 0, result.stdout[-3000:]
    for addr in FRONTENDS.values():
        assert set(serving_hosts(addr, 30)) == set(APPSERVERS)


def test_app_servers_follow_the_frontend_group(tmp_path):
    full = exported_inventory()
    app = APPSERVERS["lightweb-app1"]
    result = run_playbook_with_inventory(_without(full, "frontends", "lightweb-fe2"), "appservers",
                                         "playbooks/site.yml", tmp_path)
    assert result.returncode == 0, result.stdout[-3000:]
    try:
        assert tcp_connects(node("lightweb-fe1"), app, FASTCGI_PORT)
        assert not tcp_connects(node("lightweb-fe2"), app, FASTCGI_PORT)
    finally:
        result = run_playbook_with_inventory(full, "appservers", "playbooks/site.yml", tmp_path)
    assert result.returncode == 0, result.stdout[-3000:]
    assert tcp_connects(node("lightweb-fe2"), app, FASTCGI_PORT)
