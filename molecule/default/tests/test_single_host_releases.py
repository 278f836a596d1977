"""Releases on a single host: deploy, a release that cannot start, rollback,
each under load from the host itself, counting every response."""

import collections
import json
import os
import re
import shutil
import time
from pathlib import Path

import pytest

from lightweb_testlib import EXAMPLE_APP, example_release, host_address, http, load_from, recap_changed, release_status, \
    release_venv, run_playbook

NAME = "lightweb-single-debian12"
testinfra_hosts = ["ansible://" + NAME]
LOCAL_URL = "http://127.0.0.1/api/info"
BROKEN = "\nraise ImportError('this release cannot start')\n"
STYLE = "sta/style.css"
STATIC = "/srv/lightweb/htdocs/sta"
STYLE_V1 = (EXAMPLE_APP / STYLE).read_bytes()
STYLE_V2 = STYLE_V1 + b"\n/* release 2 */\n"
COMPILED_REQUIREMENT = "MarkupSafe==3.0.2"
PREVIOUS_COMPILED_REQUIREMENT = "MarkupSafe==3.0.1"


@pytest.fixture(name="sources", scope="module")
def fixture_sources(tmp_path_factory):
    base = tmp_path_factory.mktemp("releases")
    sources = {"2": example_release(base, "2"), "3": example_release(base, "3", append=BROKEN),
               "4": example_release(base, "4"), "5": example_release(base, "5")}
    # Release 5 needs a package with compiled wheels: a new virtualenv.
    with open(sources["5"] / "requirements.txt", "a", encoding="utf-8") as requirements:
        requirements.write(COMPILED_REQUIREMENT + "\n")
    # Releases 6 and 7 pin it in a constraints file their requirements name,
    # the one file of theirs that differs.
    for version, pin in (("6", PREVIOUS_COMPILED_REQUIREMENT), ("7", COMPILED_REQUIREMENT)):
        sources[version] = example_release(base, version)
        with open(sources[version] / "requirements.txt", "a", encoding="utf-8") as requirements:
            requirements.write("MarkupSafe\n-c pins/constraints.txt\n")
        (sources[version] / "pins").mkdir()
        (sources[version] / "pins" / "constraints.txt").write_text(pin + "\n")
    # Release 2 changes an asset: a rollback must serve release 1's again.
    (sources["2"] / STYLE).write_bytes(STYLE_V2)
    # It comes from a working copy: its history and bytecode are not code.
    for path, content in ((".git/HEAD", b"ref: refs/heads/main\n"), (".git/config", b"[core]\n"),
                          ("__pycache__/stale.cpython-311.pyc", b"\0")):
        (sources["2"] / path).parent.mkdir(exist_ok=True)
        (sources["2"] / path).write_bytes(content)
    sources["2 exported"] = shutil.copytree(sources["2"], base / "app-v2-exported",
                                            ignore=shutil.ignore_patterns(".git", "__pycache__"))
    return sources


def playbook(name, **extra_vars):
    args = ["-e", json.dumps(extra_vars)] if extra_vars else []
    return run_playbook(NAME, *args, playbook="playbooks/%s.yml" % name)


def versions_served(host, count=12):
    """Versions that answer, asked once per request from the host itself."""
    seen = collections.Counter()
    for _attempt in range(count):
        body = host.check_output("python3 -c %s", "import urllib.request as u; print(u.urlopen(%r).read().decode())"
                                 % LOCAL_URL)
        seen[json.loads(body)["version"]] += 1
    return seen


def assert_stylesheet_served(host, expected):
    """lighttpd serves `expected` from /sta (its stat cache may hold the
    file it had for a second)."""
    address, deadline = host_address(host), time.monotonic() + 5
    while (body := http(address, "/" + STYLE).body) != expected and time.monotonic() < deadline:
        time.sleep(0.5)
    assert body == expected, body[-60:]


def test_deploy_switches_to_the_new_release_without_failing_a_request(host, sources):
    before = release_status(host)
    static_files = "stat -c '%%n %%i %%Y' %s/*" % STATIC
    static_before = host.check_output(static_files).splitlines()
    with load_from(NAME, LOCAL_URL, label="single host, deploy v2") as load:
        result = playbook("deploy", webpy_app_source_dir=str(sources["2"]))
        finished = time.time()
    assert result.returncode == 0, result.stdout[-3000:]
    assert load["failed"] == 0, load["failures"][:5]
    assert set(load["versions"]) == {"1", "2"}
    assert load["started"] + load["versions"]["1"]["last"] <= finished
    after = release_status(host)
    assert after["current"] != before["current"]
    assert after["previous"] == before["current"]
    # Same requirements: the new release shares the virtualenv.
    assert release_venv(host, after["current"]) == release_venv(host, before["current"])
    assert set(versions_served(host)) == {"2"}
    assert_stylesheet_served(host, STYLE_V2)
    release = "/srv/webpy/releases/" + after["current"]
    assert not host.file(release + "/.git").exists
    assert not host.file(release + "/__pycache__/stale.cpython-311.pyc").exists
    assert host.file(release + "/app.py").exists
    # Only the changed asset was replaced: the others keep their inode and
    # time (so their ETag and Last-Modified), and nothing of the unpacking
    # is left beside them.
    static_after = host.check_output(static_files).splitlines()
    assert [line for line in static_after if "/logo.png " in line] == \
        [line for line in static_before if "/logo.png " in line]
    assert [line.split()[0] for line in static_after] == [STATIC + "/logo.png", STATIC + "/style.css"]
    assert [line for line in static_after if "/style.css " in line] != \
        [line for line in static_before if "/style.css " in line]
    assert host.check_output("find %s -name '.lightweb-unpack*'", STATIC) == ""


def test_a_release_that_cannot_start_is_never_switched_in(host, sources):
    before = release_status(host)
    with load_from(NAME, LOCAL_URL, label="single host, deploy broken v3") as load:
        result = playbook("deploy", webpy_app_source_dir=str(sources["3"]))
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "failed its health check on %s before it was switched in" % NAME in output, output[-3000:]
    assert "ImportError: this release cannot start" in output
    assert "stays on release %s" % before["current"] in output
    assert load["failed"] == 0, load["failures"][:5]
    assert set(load["versions"]) == {"2"}
    assert release_status(host)["current"] == before["current"]


def test_rollback_goes_to_the_previous_release_then_to_a_named_one(host):
    before = release_status(host)
    with load_from(NAME, LOCAL_URL, label="single host, roll back to v1") as load:
        result = playbook("rollback")
    assert result.returncode == 0, result.stdout[-3000:]
    assert load["failed"] == 0, load["failures"][:5]
    assert release_status(host)["current"] == before["previous"]
    assert set(versions_served(host)) == {"1"}
    assert_stylesheet_served(host, STYLE_V1)

    with load_from(NAME, LOCAL_URL, label="single host, roll forward to v2 by name") as load:
        result = playbook("rollback", webpy_app_release=before["current"])
    assert result.returncode == 0, result.stdout[-3000:]
    assert load["failed"] == 0, load["failures"][:5]
    assert release_status(host)["current"] == before["current"]
    assert set(versions_served(host)) == {"2"}
    assert_stylesheet_served(host, STYLE_V2)


def test_rollback_to_a_release_the_host_does_not_have_fails_naming_the_variable(host):
    before = release_status(host)
    result = playbook("rollback", webpy_app_release="no-such-release")
    assert result.returncode != 0
    assert "has no release \"no-such-release\" to roll back to (webpy_app_release)" in result.stdout + result.stderr
    assert release_status(host) == before


def test_a_release_name_on_the_host_never_gets_other_code(host, sources):
    before = release_status(host)
    running = before["current"]
    files = "find /srv/webpy/releases/%s/ -type f -exec sha1sum {} + | sort" % running
    code = host.check_output(files)
    result = playbook("deploy", webpy_app_source_dir=str(sources["4"]), webpy_app_release=running)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "webpy_app_release %s is already on the host" % running in output, output[-3000:]
    assert host.check_output(files) == code
    assert release_status(host) == before
    assert set(versions_served(host)) == {"2"}

    # The same code under its own name again is that release: nothing changes.
    result = playbook("deploy", webpy_app_source_dir=str(sources["2"]), webpy_app_release=running)
    assert result.returncode == 0, result.stdout[-3000:]
    assert recap_changed(result, NAME) == 0, result.stdout[-3000:]
    assert release_status(host) == before

    # A release marked as older versions of the role marked it (its id
    # alone, no digest) is compared file by file, to the same effect (with
    # the code as exported from the working copy: those versions copied
    # whatever the source directory held).
    host.check_output("echo %s > /srv/webpy/releases/%s/.lightweb-release", running, running)
    code = host.check_output(files)
    result = playbook("deploy", webpy_app_source_dir=str(sources["4"]), webpy_app_release=running)
    assert result.returncode != 0
    assert "webpy_app_release %s is already on the host" % running in result.stdout + result.stderr
    assert host.check_output(files) == code
    result = playbook("deploy", webpy_app_source_dir=str(sources["2 exported"]), webpy_app_release=running)
    assert result.returncode == 0, result.stdout[-3000:]
    assert recap_changed(result, NAME) == 0, result.stdout[-3000:]
    assert release_status(host) == before


def test_a_compiled_requirement_comes_as_wheels_for_the_host(host, sources):
    """This host takes its packages from wheels the controller downloads
    (webpy_app_pip_mode: wheels): those of the host's Python, machine and
    glibc, whatever the controller's. A release that needs one with compiled
    code gets its own virtualenv, which imports it as the app's account."""
    before = release_status(host)
    # A directory of the controller's wheel cache unused for over 30 days
    # goes at the next download.
    cache_home = os.environ.get("XDG_CACHE_HOME", "")
    controller_wheels = (Path(cache_home) if cache_home.startswith("/") else Path.home() / ".cache") / "lightweb/wheels"
    unused = controller_wheels / "example-py3.11-unused-since-last-month"
    unused.mkdir(parents=True, exist_ok=True)
    os.utime(unused, (time.time() - 31 * 86400,) * 2)
    result = playbook("deploy", webpy_app_source_dir=str(sources["5"]))
    assert result.returncode == 0, result.stdout[-3000:]
    assert not unused.exists()
    after = release_status(host)
    assert after["previous"] == before["current"]
    assert set(versions_served(host)) == {"5"}
    new_venv, old_venv = release_venv(host, after["current"]), release_venv(host, before["current"])
    assert new_venv != old_venv
    machine = host.check_output("uname -m")
    wheel = re.compile(r"^%s-cp311-cp311-manylinux_2_17_%s\..*\.whl$"
                       % (re.escape(COMPILED_REQUIREMENT.replace("==", "-")), machine))
    # Each virtualenv's wheels apart, those of its own requirements.
    assert [name for name in host.check_output("ls /srv/webpy/wheels/%s", new_venv).split() if wheel.match(name)]
    assert not [name for name in host.check_output("ls /srv/webpy/wheels/%s", old_venv).split() if wheel.match(name)]
    # The controller keeps them by the host's Python, newest manylinux tag
    # and virtualenv.
    glibc = host.check_output("getconf GNU_LIBC_VERSION").split()[1].replace(".", "_")
    cache = controller_wheels / ("example-py3.11-manylinux_%s_%s-%s" % (glibc, machine, new_venv))
    assert [path.name for path in cache.iterdir() if wheel.match(path.name)]
    # with the note of that download, so hosts alike and later runs take
    # these wheels without running pip again.
    noted = json.loads((cache.parent / (cache.name + ".complete")).read_text())["wheels"]
    assert sorted(path.name for path in cache.iterdir()) == noted
    host.run_expect([0], "setpriv --reuid=webpy --regid=webpy --clear-groups /srv/webpy/venvs/%s/bin/python -c %s",
                    new_venv, "import markupsafe._speedups")

    # A wheel where older versions of the role kept them all goes with the
    # next switch; those of the virtualenvs kept stay.
    host.run_expect([0], "cp /srv/webpy/wheels/%s/flup-1.0.3-*.whl /srv/webpy/wheels/", old_venv)
    result = playbook("rollback")
    assert result.returncode == 0, result.stdout[-3000:]
    assert release_status(host)["current"] == before["current"]
    assert set(versions_served(host)) == {"2"}
    assert sorted(host.check_output("ls /srv/webpy/wheels").split()) == sorted([old_venv, new_venv])


def test_a_file_the_requirements_name_is_part_of_them(host, sources):
    """Requirements that name another file (-c, -r) are read with it: a new
    pin there alone gets a new virtualenv, as a new pin in the requirements
    file would."""
    venvs = {}
    for version, pin in (("6", PREVIOUS_COMPILED_REQUIREMENT), ("7", COMPILED_REQUIREMENT)):
        result = playbook("deploy", webpy_app_source_dir=str(sources[version]))
        assert result.returncode == 0, result.stdout[-3000:]
        assert set(versions_served(host)) == {version}
        venvs[version] = release_venv(host, release_status(host)["current"])
        installed = host.check_output("/srv/webpy/venvs/%s/bin/python -c %s", venvs[version],
                                      'import importlib.metadata as m; print(m.version("MarkupSafe"))')
        assert installed == pin.split("==")[1]
    assert venvs["6"] != venvs["7"]


def test_a_switch_whose_restart_was_lost_is_restarted_by_the_next_run(host, sources):
    """A run that switched `current` and then failed before its restart (a
    settings trial, a lost connection) leaves the app on the release before,
    with nothing else on the host to tell: the next run of that release
    restarts the app onto it, and the run after changes nothing."""
    before = release_status(host)
    assert set(versions_served(host)) == {"7"}
    # What such a run leaves: `current` moved, the app not restarted.
    host.run_expect([0], "/srv/webpy/bin/lightweb-release --base /srv/webpy switch %s", before["previous"])
    assert set(versions_served(host)) == {"7"}
    assert release_status(host, unit="lighttpd.service")["restart_pending"] is True
    # A check run reports the restart, and leaves the app as it is.
    result = run_playbook(NAME, "--check", "-e", json.dumps({"webpy_app_source_dir": str(sources["6"])}),
                          playbook="playbooks/deploy.yml")
    assert result.returncode == 0 and recap_changed(result, NAME) > 0, result.stdout[-3000:]
    assert set(versions_served(host)) == {"7"}
    result = playbook("deploy", webpy_app_source_dir=str(sources["6"]))
    assert recap_changed(result, NAME) > 0, result.stdout[-3000:]
    assert set(versions_served(host)) == {"6"}
    assert release_status(host)["current"] == before["previous"]
    result = playbook("deploy", webpy_app_source_dir=str(sources["6"]))
    assert recap_changed(result, NAME) == 0, result.stdout[-3000:]
