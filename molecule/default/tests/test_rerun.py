"""A re-run compares what is on the host with what the roles deploy: what
was changed by hand is put right, and then a run changes nothing."""

from lightweb_testlib import EXAMPLE_APP, file_checksum, host_address, http, recap_changed, release_status, run_playbook, \
    steps_run, wait_for

CONFIG = "/etc/lighttpd/lighttpd.conf"
ACCESS_LOG = "/var/log/lighttpd/access.log"
STATIC = "/srv/lightweb/htdocs/sta"
LAUNCHER = "/srv/webpy/bin/lightweb_fcgi.py"


def test_a_rerun_puts_right_what_was_changed_by_hand_then_changes_nothing(host):
    name = host.backend.get_hostname()
    release = "/srv/webpy/releases/%s" % release_status(host)["current"]
    config = file_checksum(host, CONFIG)
    log_owner = host.check_output("stat -c %%U:%%G %s", ACCESS_LOG)
    venv_link = host.check_output("readlink %s/venv", release)
    launcher = file_checksum(host, LAUNCHER)
    host.check_output(
        "usermod -s /bin/bash webpy && chmod 700 %s && rm %s/venv && echo '/* by hand */' >> %s/style.css"
        " && rm %s/logo.png && chown root:root %s && echo '# by hand' >> %s && echo '# by hand' >> %s",
        release, release, STATIC, STATIC, ACCESS_LOG, CONFIG, LAUNCHER)

    result = run_playbook(name)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert recap_changed(result, name) > 0
    assert host.user("webpy").shell == "/usr/sbin/nologin"
    assert host.file(release).mode == 0o755
    assert host.check_output("readlink %s/venv", release) == venv_link
    assert host.check_output("stat -c %%U:%%G %s", ACCESS_LOG) == log_owner
    assert file_checksum(host, CONFIG) == config
    assert file_checksum(host, LAUNCHER) == launcher
    addr = host_address(host)
    wait_for(addr)
    for asset in ("style.css", "logo.png"):
        assert http(addr, "/sta/" + asset).body == (EXAMPLE_APP / "sta" / asset).read_bytes()

    again = run_playbook(name)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert recap_changed(again, name) == 0, again.stdout[-3000:]
    # In place, the host is read and compared once per role: no step runs
    # (each would change nothing, at a round trip or more per task).
    assert steps_run(again) == [], again.stdout[-3000:]


def test_a_package_removed_by_hand_is_installed_again_and_nothing_else_is_added(host):
    name = host.backend.get_hostname()
    packages = "dpkg-query --show --showformat='${db:Status-Status} ${Package}\\n' | sed -n 's/^installed //p'"
    before = set(host.check_output(packages).split())
    assert "logrotate" in before
    # The roles run apt-get: no python3-apt is added for Ansible's apt module.
    assert "python3-apt" not in before
    # Lists over an hour old: the run refreshes them before it installs.
    host.check_output("apt-get -q -y remove logrotate && touch -d '-2 hours' /var/lib/apt/lists/partial")

    result = run_playbook(name)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert set(host.check_output(packages).split()) == before
    assert host.run("find /var/lib/apt/lists/partial -maxdepth 0 -mmin -10").stdout.strip()

    again = run_playbook(name)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert recap_changed(again, name) == 0, again.stdout[-3000:]
