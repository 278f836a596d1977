"""New settings of an app server (its environment, its command line) are
tried on a private socket before they are applied, and the app is checked
again once it runs with them under systemd."""

import json
import time

from lightweb_testlib import (
    assert_settings_refused, file_checksum, main_pid, node, recap_changed, release_status, run_playbook, wait_for,
)

APPSERVER = "lightweb-app1"  # uWSGI
UNIT = "webpy-example"
SERVICE = UNIT + ".service"
UNIT_FILE = "/etc/systemd/system/" + SERVICE
FRONTEND_URL = "https://10.89.42.11"
# The app's account may write here, but not in its sandbox (ProtectSystem=strict):
# not one of its declared directories (webpy_app_log_dir, webpy_app_state_dirs).
UNDECLARED_DIR = "/var/lib/lightweb-settings-test"

# Run once, not once per inventory host: the test picks its hosts.
testinfra_hosts = ["ansible://lightweb-fe1"]


def with_environment(**environment):
    return run_playbook(APPSERVER, "-e", json.dumps({"webpy_app_environment": environment}))


def test_settings_the_app_cannot_start_with_are_refused_before_they_are_applied():
    app = node(APPSERVER)
    unit, pid = file_checksum(app, UNIT_FILE), main_pid(app, SERVICE)

    assert_settings_refused(with_environment(PYTHONIOENCODING="utf-8x"), APPSERVER)
    assert file_checksum(app, UNIT_FILE) == unit
    assert main_pid(app, SERVICE) == pid
    assert "PYTHONIOENCODING" not in app.check_output("systemctl show -p Environment %s.service" % UNIT)


def test_settings_that_fail_only_under_systemd_fail_the_run_and_a_fixed_run_recovers():
    # uWSGI reads options from UWSGI_* variables: its log file here is one the
    # app's account may write, as in the try-out, but its sandbox may not.
    app = node(APPSERVER)
    app.check_output("install -d -o webpy -g webpy -m 0750 %s", UNDECLARED_DIR)
    try:
        result = with_environment(UWSGI_LOGTO=UNDECLARED_DIR + "/uwsgi.log")
        output = result.stdout + result.stderr
        assert result.returncode != 0
        assert "The app, restarted with new settings, failed its health check on %s" % APPSERVER in output, \
            output[-3000:]
        assert "journalctl -u %s" % UNIT in output
        assert "UWSGI_LOGTO" in app.check_output("systemctl show -p Environment %s.service" % UNIT)
    finally:
        # The settings of the inventory again: tried, applied, and the app
        # restarted even after the crashes above.
        fixed = run_playbook(APPSERVER)
        app.run("rm -rf %s", UNDECLARED_DIR)
    assert recap_changed(fixed, APPSERVER) > 0
    assert app.service(UNIT + ".service").is_running
    assert "UWSGI_LOGTO" not in app.check_output("systemctl show -p Environment %s.service" % UNIT)
    wait_for(FRONTEND_URL, "/api/info")


def test_a_unit_whose_restart_was_lost_is_restarted_by_the_next_run():
    """A run cut off after writing the app's unit and before its restart
    leaves the old settings running; a daemon-reload by anything else (a
    package install) hides that from NeedDaemonReload. The next run of the
    same settings restarts the app, and the run after changes nothing."""
    app = node(APPSERVER)
    pid = main_pid(app, SERVICE)
    # What such a run leaves: the unit written after the app started, and loaded.
    time.sleep(1.1)  # systemd gives the start in whole seconds
    app.check_output("touch %s && systemctl daemon-reload", UNIT_FILE)
    assert release_status(app, unit=SERVICE)["restart_pending"] is True
    result = run_playbook(APPSERVER)
    assert result.returncode == 0 and recap_changed(result, APPSERVER) > 0, result.stdout[-3000:]
    assert main_pid(app, SERVICE) != pid
    assert release_status(app, unit=SERVICE)["restart_pending"] is False
    assert recap_changed(run_playbook(APPSERVER), APPSERVER) == 0
    wait_for(FRONTEND_URL, "/api/info")
