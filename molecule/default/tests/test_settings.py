"""New settings of the app on a single host (its environment, its command
line) are tried on a private socket before they reach lighttpd.conf, from
which lighttpd spawns the app."""

import json

import pytest

from lightweb_testlib import (
    SCHED_BATCH, SCHED_OTHER, assert_settings_refused, fcgi_processes, file_checksum, host_address, main_pid, node,
    process_environ, recap_changed, run_playbook, wait_for,
)

CONFIG = "/etc/lighttpd/lighttpd.conf"
RECORD = "/srv/webpy/spawn-settings.sha256"
APP_USER = "webpy"
UWSGI_HOST = "lightweb-single-debian12"  # the default server; Debian 13 runs flup
# The inventory's environment (molecule.yml): -e replaces it whole.
INVENTORY_ENVIRONMENT = {"LIGHTWEB_DSN": 'postgres://app:p%40ss@db/app?note="a b"&dir=C:\\temp'}


def with_environment(name, settings=None, selection=(), **extra):
    """A run with `extra` added to the inventory's environment, and other
    `settings` of the app; `selection` adds --tags or --skip-tags."""
    environment = dict(INVENTORY_ENVIRONMENT, **extra)
    return run_playbook(name, *selection, "-e", json.dumps(dict(settings or {}, webpy_app_environment=environment)))


def test_settings_the_app_cannot_start_with_never_reach_lighttpd(host):
    name = host.backend.get_hostname()
    config, record, pid = file_checksum(host, CONFIG), file_checksum(host, RECORD), main_pid(host, "lighttpd.service")

    assert_settings_refused(with_environment(name, PYTHONIOENCODING="utf-8x"), name)
    assert file_checksum(host, CONFIG) == config
    assert file_checksum(host, RECORD) == record
    assert main_pid(host, "lighttpd.service") == pid
    wait_for(host_address(host), "/api/info")


# The same steps whichever server runs the app: one host runs them.
def test_settings_the_app_starts_with_are_applied_and_recorded():
    name = UWSGI_HOST
    host = node(name)
    record = file_checksum(host, RECORD)
    try:
        result = with_environment(name, {"webpy_app_cpu_policy": "other"}, LIGHTWEB_SETTINGS_TEST="applied")
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        assert file_checksum(host, RECORD) != record
        procs = fcgi_processes(host)
        assert procs
        assert {p.policy for p in procs} == {SCHED_OTHER}
        for proc in procs:
            assert "LIGHTWEB_SETTINGS_TEST=applied" in process_environ(host, proc.pid, APP_USER)
        wait_for(host_address(host), "/api/info")
    finally:
        restored = run_playbook(name)
    assert restored.returncode == 0, restored.stdout[-3000:] + restored.stderr[-3000:]
    assert recap_changed(restored, name) > 0
    assert file_checksum(host, RECORD) == record
    procs = fcgi_processes(host)
    assert {p.policy for p in procs} == {SCHED_BATCH}
    for proc in procs:
        assert "LIGHTWEB_SETTINGS_TEST=applied" not in process_environ(host, proc.pid, APP_USER)


# Runs that deploy lighttpd.conf without the app role's steps: the play
# tries the settings itself.
@pytest.mark.parametrize("selection", [("--tags", "lighttpd"), ("--skip-tags", "webpy_app")],
                         ids=["tags-lighttpd", "skip-tags-webpy_app"])
def test_settings_are_tried_when_only_lighttpd_deploys_them(selection):
    name = UWSGI_HOST
    host = node(name)
    config, record, pid = file_checksum(host, CONFIG), file_checksum(host, RECORD), main_pid(host, "lighttpd.service")

    assert_settings_refused(with_environment(name, selection=selection, PYTHONIOENCODING="utf-8x"), name)
    assert file_checksum(host, CONFIG) == config
    assert file_checksum(host, RECORD) == record
    assert main_pid(host, "lighttpd.service") == pid

    try:
        result = with_environment(name, selection=selection, LIGHTWEB_SETTINGS_TEST="tagged")
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        assert file_checksum(host, CONFIG) != config
        assert file_checksum(host, RECORD) != record
        for proc in fcgi_processes(host):
            assert "LIGHTWEB_SETTINGS_TEST=tagged" in process_environ(host, proc.pid, APP_USER)
        wait_for(host_address(host), "/api/info")
    finally:
        restored = run_playbook(name)
    assert restored.returncode == 0, restored.stdout[-3000:] + restored.stderr[-3000:]
    assert file_checksum(host, CONFIG) == config
    assert file_checksum(host, RECORD) == record


# Such a run on a host the app was never deployed to: lighttpd.conf would
# spawn an app that is not there. Another base directory stands for a host
# without the app.
def test_a_tagged_run_stops_on_a_host_without_the_app():
    name = UWSGI_HOST
    host = node(name)
    config, pid = file_checksum(host, CONFIG), main_pid(host, "lighttpd.service")

    result = run_playbook(name, "--tags", "lighttpd", "-e", "webpy_app_base_dir=/srv/webpy-never-deployed")
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "has no release of the app yet (/srv/webpy-never-deployed/current is missing)" in output, output[-3000:]
    assert "changed=0" in output
    assert file_checksum(host, CONFIG) == config
    assert main_pid(host, "lighttpd.service") == pid
    assert not host.file("/srv/webpy-never-deployed").exists
