"""Releases on the farm, under load from a client host that counts every
response: rolling deploy, releases that fail their health check before or
after the switch, rollback, app servers going away, a bad front-end setting."""

import collections
import json
import time

import pytest
from lightweb_testlib import (
    example_release, http, load_from, node, power_cycle, release_status, run_playbook, serving_hosts,
)

FRONTENDS = {"lightweb-fe1": "https://10.89.42.11", "lightweb-fe2": "https://10.89.42.12"}
APPSERVERS = {"lightweb-app1": "10.89.42.21", "lightweb-app2": "10.89.42.22", "lightweb-app3": "10.89.42.23"}
URLS = [addr + "/api/info" for addr in FRONTENDS.values()]
CLIENT = "lightweb-client"
UNIT = "webpy-example"
DISABLE_TIME = 1  # lighttpd_fastcgi_disable_time (default)
BROKEN = "\nraise ImportError('this release cannot start')\n"
# Passes the try-out on a private socket but cannot start under systemd
# (which sets INVOCATION_ID): only the check after the switch catches it.
BROKEN_UNDER_SYSTEMD = "\nif 'INVOCATION_ID' in os.environ:\n    raise RuntimeError('crash on start')\n"
BATCH_TASK = "TASK [Take the batch out of rotation on every front-end]"

testinfra_hosts = ["ansible://lightweb-fe1"]


@pytest.fixture(name="sources", scope="module")
def fixture_sources(tmp_path_factory):
    base = tmp_path_factory.mktemp("releases")
    return {"2": example_release(base, "2"), "3": example_release(base, "3", append=BROKEN),
            "4": example_release(base, "4", append=BROKEN_UNDER_SYSTEMD)}


def playbook(name, **extra_vars):
    args = ["-e", json.dumps(extra_vars)] if extra_vars else []
    return run_playbook("all", *args, playbook="playbooks/%s.yml" % name)


def farm_releases():
    return {name: release_status(node(name)) for name in APPSERVERS}


def versions_served(count=30):
    seen = collections.Counter()
    for addr in FRONTENDS.values():
        for _attempt in range(count // len(FRONTENDS)):
            resp = http(addr, "/api/info")
            assert resp.status == 200, resp.status
            seen[resp.json()["version"]] += 1
    return seen


def assert_every_backend_in_rotation():
    for name in FRONTENDS:
        config = node(name).file("/etc/lighttpd/lighttpd.conf").content_string
        for app in APPSERVERS:
            assert '"%s" => (' % app in config, (name, app)
        # A deploy rewrites lighttpd.conf twice per batch; the backups do not
        # pile up, and the package's file, the first replaced, stays among them.
        backups = node(name).check_output("ls -1t /etc/lighttpd/lighttpd.conf.*~").split()
        assert 1 <= len(backups) <= 6, backups
        assert 'include "/etc/lighttpd/conf-enabled/*.conf"' in node(name).file(backups[-1]).content_string, backups


def test_rolling_deploy_switches_every_app_server_without_failing_a_request(sources):
    before = farm_releases()
    with load_from(CLIENT, *URLS, label="rolling deploy of v2") as load:
        result = playbook("deploy", webpy_app_source_dir=str(sources["2"]))
        finished = time.time()
    assert result.returncode == 0, result.stdout[-3000:]
    assert load["failed"] == 0, load["failures"][:5]
    assert set(load["versions"]) == {"1", "2"}
    assert load["started"] + load["versions"]["1"]["last"] <= finished
    # One app server at a time (lightweb_deploy_serial defaults to 1).
    assert result.stdout.count(BATCH_TASK) == len(APPSERVERS)
    after = farm_releases()
    assert len({status["current"] for status in after.values()}) == 1  # one release id for the run
    for name, status in after.items():
        assert status["previous"] == before[name]["current"]
    assert set(versions_served()) == {"2"}
    assert set(serving_hosts(URLS[0][: -len("/api/info")], 30)) == set(APPSERVERS)
    assert_every_backend_in_rotation()


def test_a_release_that_cannot_start_stops_the_rollout_at_the_first_batch(sources):
    before = farm_releases()
    with load_from(CLIENT, *URLS, label="rolling deploy of a broken v3") as load:
        result = playbook("deploy", webpy_app_source_dir=str(sources["3"]))
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "failed its health check on lightweb-app1 before it was switched in" in output, output[-3000:]
    assert "ImportError: this release cannot start" in output
    assert "The rollout stopped at batch 1: lightweb-app1 failed" in output
    assert output.count(BATCH_TASK) == 1
    assert load["failed"] == 0, load["failures"][:5]
    assert set(load["versions"]) == {"2"}
    after = farm_releases()
    assert {n: s["current"] for n, s in after.items()} == {n: s["current"] for n, s in before.items()}
    # Hosts after the failed batch never received the release.
    for name in ("lightweb-app2", "lightweb-app3"):
        assert after[name]["releases"] == before[name]["releases"]
    assert_every_backend_in_rotation()


def test_a_release_failing_after_the_switch_goes_back_and_stops_the_rollout(sources):
    before = farm_releases()
    with load_from(CLIENT, *URLS, label="rolling deploy of v4, failing under systemd") as load:
        result = playbook("deploy", webpy_app_source_dir=str(sources["4"]))
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "failed its health check on lightweb-app1:" in output, output[-3000:]
    assert "lightweb-app1 is back on release %s, which answers its health check" % before["lightweb-app1"]["current"] \
        in output
    assert "The rollout stopped at batch 1" in output
    assert load["failed"] == 0, load["failures"][:5]
    assert set(load["versions"]) == {"2"}
    assert {n: s["current"] for n, s in farm_releases().items()} == {n: s["current"] for n, s in before.items()}
    assert_every_backend_in_rotation()


def test_rollback_rolls_the_farm_back_to_the_previous_release():
    before = farm_releases()
    with load_from(CLIENT, *URLS, label="rollback to v1, two app servers at a time") as load:
        result = run_playbook("all", "-e", json.dumps({"lightweb_deploy_serial": 2}), playbook="playbooks/rollback.yml")
    assert result.returncode == 0, result.stdout[-3000:]
    assert result.stdout.count(BATCH_TASK) == 2
    assert load["failed"] == 0, load["failures"][:5]
    assert set(load["versions"]) == {"1", "2"}
    after = farm_releases()
    for name, status in after.items():
        assert status["current"] == before[name]["previous"], (name, before, after)
    served = versions_served()
    assert set(served) == {"1"}, (served, before, after)


def test_an_app_server_whose_restart_was_lost_is_deployed_again(sources):
    """An app server whose `current` moved without the restart that follows
    (a run failed in between) runs the release before while it names the new
    one: the next deploy of that release takes it in, as one that does not
    run it yet, and restarts its app onto it."""
    app1 = node("lightweb-app1")
    assert set(versions_served()) == {"1"}
    # The rollback before left no history to name v2 by: its release on disk does.
    v2_app = app1.check_output("grep -l '\"LIGHTWEB_APP_VERSION\", \"2\"' /srv/webpy/releases/*/app.py")
    v2_release = v2_app.split("/")[-2]
    app1.run_expect([0], "/srv/webpy/bin/lightweb-release --base /srv/webpy switch %s", v2_release)
    assert set(versions_served()) == {"1"}
    result = playbook("deploy", webpy_app_source_dir=str(sources["2"]))
    assert result.returncode == 0, result.stdout[-3000:]
    assert set(versions_served()) == {"2"}
    assert release_status(app1)["current"] == v2_release
    # Back to the release site.yml deploys, for the tests after these.
    result = playbook("rollback")
    assert result.returncode == 0, result.stdout[-3000:]
    assert set(versions_served()) == {"1"}


def _failures_between(load, start, end):
    return [f for f in load["failures"] if start <= load["started"] + f["t"] < end]


def _wait_until_serving(name, seconds=90):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if name in serving_hosts(URLS[1][: -len("/api/info")], 12):
            return True
        time.sleep(1)
    return False


def test_frontends_keep_serving_while_an_app_server_or_its_host_is_down():
    app3 = node("lightweb-app3")
    with load_from(CLIENT, *URLS, label="app3 service stopped, then its host") as load:
        service_down = time.time()
        app3.run_expect([0], "systemctl stop %s.socket %s.service" % (UNIT, UNIT))
        time.sleep(8)
        app3.run_expect([0], "systemctl start %s.socket" % UNIT)
        service_back = time.time()
        service_rejoined = _wait_until_serving("lightweb-app3")
        host_down = time.time()
        booted = power_cycle("lightweb-app3", down=10)
        host_rejoined = _wait_until_serving("lightweb-app3")
        end = time.time()
    phases = {"service down": (service_down, host_down), "host down": (host_down, end)}
    late = {}
    for phase, (start, stop) in phases.items():
        failures = _failures_between(load, start, stop)
        first = load["started"] + failures[0]["t"] if failures else stop
        late[phase] = [f for f in failures if load["started"] + f["t"] > first + DISABLE_TIME + 1]
        print("%s: %d failed requests, %d of them after the first disable-time" % (
            phase, len(failures), len(late[phase])))
    print("service back after %.0f s, host back after %.0f s (boot: %s)" % (
        service_back - service_down, end - host_down, booted))
    assert service_rejoined and host_rejoined
    assert not late["service down"] and not late["host down"], late


def test_an_invalid_lighttpd_setting_fails_the_run_and_the_frontend_keeps_serving():
    fe1 = node("lightweb-fe1")
    config = fe1.check_output("sha256sum /etc/lighttpd/lighttpd.conf")
    pid = fe1.check_output("systemctl show -p MainPID --value lighttpd.service")
    with load_from(CLIENT, URLS[0], label="invalid lighttpd setting pushed to fe1") as load:
        result = run_playbook("lightweb-fe1", "-e", json.dumps({"lighttpd_extra_config": 'server.port = "not a port'}))
    assert result.returncode != 0
    assert "lighttpd.conf" in result.stdout + result.stderr
    assert load["failed"] == 0, load["failures"][:5]
    assert load["sent"] > 50
    assert fe1.check_output("sha256sum /etc/lighttpd/lighttpd.conf") == config
    assert fe1.check_output("systemctl show -p MainPID --value lighttpd.service") == pid
