"""Unit tests of the release tool and the FastCGI health probe of the webpy_app role."""

import grp
import hashlib
import json
import os
import pwd
import re
import shutil
import socket
import struct
import subprocess
import sys
import tarfile
import threading
import time
from pathlib import Path

import pytest
import yaml
from packaging.tags import platform_tags

ROLE_FILES = Path(__file__).resolve().parents[2] / "roles" / "webpy_app" / "files"
sys.path.insert(0, str(ROLE_FILES))

import lightweb_fcgi_probe  # noqa: E402  pylint: disable=wrong-import-position
import lightweb_release  # noqa: E402  pylint: disable=wrong-import-position


def make_release(base, release, venv="v1"):
    path = base / "releases" / release
    path.mkdir(parents=True)
    (base / "venvs" / venv).mkdir(parents=True, exist_ok=True)
    os.symlink("../../venvs/" + venv, path / "venv")
    return path


def test_digest_names_the_content_and_ignores_bytecode(tmp_path):
    (tmp_path / "app.py").write_text("print(1)\n")
    first = lightweb_release.digest(tmp_path)
    (tmp_path / "__pycache__").mkdir()
    (tmp_path / "__pycache__" / "app.cpython-311.pyc").write_bytes(b"\0")
    assert lightweb_release.digest(tmp_path) == first
    (tmp_path / "app.py").write_text("print(2)\n")
    assert lightweb_release.digest(tmp_path) != first


def test_digest_counts_linked_directories_as_they_are_deployed(tmp_path):
    """A directory linked into the app is packed with it: a change there is a
    new release, and the digest of the tree unpacked on a host is the same."""
    shared, source = tmp_path / "shared", tmp_path / "app"
    shared.mkdir()
    (shared / "mod.py").write_text("VERSION = 1\n")
    source.mkdir()
    (source / "app.py").write_text("import lib.mod\n")
    os.symlink("../shared", source / "lib")
    os.symlink("..", shared / "up")  # a loop: not followed
    first = lightweb_release.digest(source)
    archive = lightweb_release.pack(str(source), str(tmp_path / "cache"), code=True)["archive"]
    with tarfile.open(archive) as tar:
        tar.extractall(tmp_path / "unpacked")  # nosec: the test's own archive
    assert lightweb_release.digest(tmp_path / "unpacked") == first
    (shared / "mod.py").write_text("VERSION = 2\n")
    assert lightweb_release.digest(source) != first


def test_a_requirements_file_naming_no_other_is_digested_alone(tmp_path):
    """Virtualenvs built before nested files were read keep their names."""
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("web.py==0.76  # -r ignored.txt\nflup==1.0.3 --hash=sha256:00\n")
    assert lightweb_release.requirements_digest(str(requirements)) == hashlib.sha256(requirements.read_bytes()).hexdigest()
    assert lightweb_release.requirements_digest(str(tmp_path / "missing.txt")) == ""


@pytest.mark.parametrize("line", ["-r reqs/base.txt", "-rreqs/base.txt", "--requirement reqs/base.txt",
                                  "--requirement=reqs/base.txt", "-c reqs/base.txt", "--constraint=reqs/base.txt",
                                  "--index-url https://pypi.example.com/simple -r \\\n  'reqs/base.txt'"])
def test_the_requirements_digest_covers_the_files_pip_reads(tmp_path, line):
    (tmp_path / "reqs").mkdir()
    requirements, base = tmp_path / "requirements.txt", tmp_path / "reqs" / "base.txt"
    requirements.write_text("web.py==0.76\n%s\n" % line)
    # Names resolve against the directory of the file that names them.
    base.write_text("flup==1.0.3\n-c pins.txt\n")
    (tmp_path / "reqs" / "pins.txt").write_text("MarkupSafe==3.0.2\n")
    first = lightweb_release.requirements_digest(str(requirements))
    assert lightweb_release.requirement_files(str(requirements)) == [
        [name, hashlib.sha256((tmp_path / name).read_bytes()).hexdigest()]
        for name in ("requirements.txt", "reqs/base.txt", "reqs/pins.txt")]
    (tmp_path / "reqs" / "pins.txt").write_text("MarkupSafe==3.0.1\n")
    second = lightweb_release.requirements_digest(str(requirements))
    base.write_text("flup==1.0.3\n")
    assert len({first, second, lightweb_release.requirements_digest(str(requirements))}) == 3


def test_the_requirements_report_names_what_a_host_would_not_find(tmp_path):
    source = tmp_path / "app"
    source.mkdir()
    (source / "requirements.txt").write_text(
        "-r base.txt\n-r missing.txt  # a comment\n-c ../outside.txt\n-r https://example.com/r.txt\n-r ${PINS}\n"
        "-c %s\n" % (tmp_path / "pins.txt"))
    # A file named twice, or in a loop, is read once.
    (source / "base.txt").write_text("-r requirements.txt\n-r base.txt\n")
    (tmp_path / "outside.txt").write_text("flup==1.0.3\n")
    (tmp_path / "pins.txt").write_text("flup==1.0.3\n")
    report = lightweb_release.requirements_report(str(source / "requirements.txt"), str(source))
    # Names as the first file's directory sees them; absolute ones as written.
    assert report["files"] == ["requirements.txt", "base.txt", "missing.txt", "../outside.txt", str(tmp_path / "pins.txt")]
    assert report["unreachable"] == ["missing.txt", "../outside.txt", str(tmp_path / "pins.txt")]
    assert report["sha256"] == lightweb_release.requirements_digest(str(source / "requirements.txt"))


# Requirement lines, and what of each pip would resolve from the directory
# it runs in (None: nothing).
REQUIREMENT_LINES = [
    ("./mylib", "./mylib"), ("../shared/mylib", "../shared/mylib"), ("mylib/", "mylib/"), ("-e .", "."),
    ("-e./mylib", "./mylib"), ("--editable ./mylib", "./mylib"), ("--editable=./mylib", "./mylib"),
    ("-e file:../mylib", "file:../mylib"), ("file:../mylib", "file:../mylib"), ("./mylib[extra]", "./mylib[extra]"),
    ("dist/mylib-1.0-py3-none-any.whl", "dist/mylib-1.0-py3-none-any.whl"), ("mylib-1.0.tar.gz", "mylib-1.0.tar.gz"),
    ("MyLib-1.0-py3-none-any.WHL", "MyLib-1.0-py3-none-any.WHL"), ("mylib-1.0.tar.lz[x]", "mylib-1.0.tar.lz[x]"),
    ("./mylib;python_version>'3'", "./mylib"), ("./mylib --config-settings=x=y", "./mylib"),
    ("mylib-1.0-py3-none-any.whl\\\n  --hash=sha256:00", "mylib-1.0-py3-none-any.whl"),
    # A comment line ending in a backslash does not go on.
    ("# vendored \\\n./vendor/mylib", "./vendor/mylib"),
    # Names, URLs, absolute paths and variables are not resolved from where pip runs.
    ("web.py==0.76", None), ("flup==1.0.3 ; python_version >= '3.8'", None), ("zope.interface>=6", None),
    ("web.py == 0.76 \\\n  --hash=sha256:00", None), ("mylib[extra]==1.0", None),
    ("mylib @ https://example.com/mylib-1.0.tar.gz", None), ("mylib@https://example.com/mylib-1.0.tar.gz", None),
    ("mylib[x]@git+https://example.com/mylib.git", None), ("https://example.com/mylib-1.0.tar.gz", None),
    ("file:///opt/wheels/mylib-1.0-py3-none-any.whl", None), ("/opt/mylib", None), ("-e /opt/mylib", None),
    ("${VENDOR}/mylib", None), ("-e git+https://example.com/mylib.git#egg=mylib", None),
    ("--index-url https://example.com/simple", None), ("--find-links ./wheels", None), ("-f ./wheels", None),
    ("-r reqs/base.txt", None), ("# ./commented", None), ("web.py==0.76  # ./mylib", None),
]


@pytest.mark.parametrize("line, found", REQUIREMENT_LINES)
def test_requirements_given_as_relative_paths_are_found(line, found):
    assert list(lightweb_release.relative_path_requirements("flup==1.0.3\n%s\n" % line)) == ([found] if found else [])


def test_the_settings_check_reads_every_requirements_file_the_tool_would_flag():
    """The role runs the release tool on requirements that match its
    pattern only: it must match every line the tool finds something in, and
    none of the example app's."""
    pattern = re.compile(yaml.safe_load((ROLE_FILES.parent / "vars" / "main.yml").read_text())[
        "__webpy_app_requirements_may_name"])
    for line, found in REQUIREMENT_LINES + [("-r base.txt", None), ("--constraint=pins.txt", None),
                                            ("web.py==0.76 -c pins.txt", None)]:
        text = "flup==1.0.3\n%s\n" % line
        if found or list(lightweb_release.named_requirement_files(text)):
            assert pattern.search(text), line
    assert not pattern.search((ROLE_FILES / "example" / "requirements.txt").read_text())


def test_the_requirements_report_names_relative_paths_in_every_file_pip_reads(tmp_path):
    (tmp_path / "reqs").mkdir()
    (tmp_path / "requirements.txt").write_text("web.py==0.76\n-e .\n-r reqs/base.txt\n")
    (tmp_path / "reqs" / "base.txt").write_text("./vendor/mylib\nflup==1.0.3\n")
    report = lightweb_release.requirements_report(str(tmp_path / "requirements.txt"), str(tmp_path))
    assert report["relative_paths"] == ['"." in requirements.txt', '"./vendor/mylib" in reqs/base.txt']
    assert report["unreachable"] == []
    (tmp_path / "reqs" / "base.txt").write_text("flup==1.0.3\n")
    (tmp_path / "requirements.txt").write_text("web.py==0.76\n-r reqs/base.txt\n")
    assert lightweb_release.requirements_report(str(tmp_path / "requirements.txt"), str(tmp_path))["relative_paths"] == []


def test_manifest_lists_what_a_copy_of_the_tree_puts_on_a_host(tmp_path):
    (tmp_path / "css").mkdir()
    (tmp_path / "css" / "site.css").write_bytes(b"body{}\n")
    (tmp_path / "logo.png").write_bytes(b"\x89PNG\0")
    (tmp_path / "empty").mkdir()
    assert lightweb_release.manifest(tmp_path) == {
        "dirs": ["css", "empty"],
        "files": [["css/site.css", hashlib.sha1(b"body{}\n").hexdigest()],
                  ["logo.png", hashlib.sha1(b"\x89PNG\0").hexdigest()]],
    }


def make_tree(root):
    (root / "css").mkdir(parents=True)
    (root / "css" / "site.css").write_bytes(b"body{}\n")
    (root / "run.sh").write_bytes(b"#!/bin/sh\n")
    (root / "run.sh").chmod(0o700)
    os.symlink("css", root / "styles")  # followed, as a copy follows it
    os.symlink("..", root / "css" / "up")  # a loop: not followed
    return root


def test_pack_archives_what_a_copy_of_the_tree_puts_on_a_host(tmp_path):
    source = make_tree(tmp_path / "src")
    result = lightweb_release.pack(str(source), str(tmp_path / "cache"))
    assert result["changed"]
    with tarfile.open(result["archive"]) as tar:
        members = {m.name: (m.type, m.mode, m.uid, m.gid, m.uname, m.gname) for m in tar.getmembers()}
        assert tar.extractfile("styles/site.css").read() == b"body{}\n"
    assert members == {
        "css": (tarfile.DIRTYPE, 0o755, 0, 0, "root", "root"),
        "css/site.css": (tarfile.REGTYPE, 0o644, 0, 0, "root", "root"),
        "run.sh": (tarfile.REGTYPE, 0o644, 0, 0, "root", "root"),
        "styles": (tarfile.DIRTYPE, 0o755, 0, 0, "root", "root"),
        "styles/site.css": (tarfile.REGTYPE, 0o644, 0, 0, "root", "root"),
    }
    # The manifest of the same tree lists the same entries.
    listed = lightweb_release.manifest(str(source))
    assert sorted(listed["dirs"] + [path for path, _sha1 in listed["files"]]) == sorted(members)


def test_pack_names_archives_by_content_and_reuses_them(tmp_path):
    source, cache = make_tree(tmp_path / "src"), tmp_path / "cache"
    first = lightweb_release.pack(str(source), str(cache))
    again = lightweb_release.pack(str(source), str(cache))
    assert again == dict(first, changed=False)
    (source / "css" / "site.css").write_bytes(b"body{margin:0}\n")
    other = lightweb_release.pack(str(source), str(cache))
    assert other["changed"] and other["archive"] != first["archive"]
    # Archives unused for a day go when another is made; the others stay.
    os.utime(first["archive"], (time.time() - 2 * 86400,) * 2)
    (source / "new.txt").write_bytes(b"new\n")
    newest = lightweb_release.pack(str(source), str(cache))
    assert sorted(os.listdir(cache)) == sorted(os.path.basename(r["archive"]) for r in (other, newest))


def test_pack_only_named_entries_and_refuses_unknown_ones(tmp_path):
    source = make_tree(tmp_path / "src")
    result = lightweb_release.pack(str(source), str(tmp_path / "cache"), ["css", "run.sh"])
    with tarfile.open(result["archive"]) as tar:
        assert tar.getnames() == ["css", "run.sh"]
    with pytest.raises(SystemExit, match="not under .*: nope"):
        lightweb_release.pack(str(source), str(tmp_path / "cache"), ["css", "nope"])


def test_pack_of_app_code_leaves_out_what_its_digest_leaves_out(tmp_path):
    source = make_tree(tmp_path / "src")
    for ignored in (".git/objects/ab", "__pycache__", "css/.svn", ".hg"):
        (source / ignored).mkdir(parents=True)
        (source / ignored / "data").write_bytes(b"history\n")
    (source / "app.pyc").write_bytes(b"\0")
    (source / ".gitignore").write_bytes(b"*.pyc\n")  # kept: the app's own file
    code = lightweb_release.pack(str(source), str(tmp_path / "cache"), code=True)
    with tarfile.open(code["archive"]) as tar:
        assert sorted(tar.getnames()) == [".gitignore", "css", "css/site.css", "run.sh", "styles", "styles/site.css"]
    # A tree that is not code is packed as it is.
    whole = lightweb_release.pack(str(source), str(tmp_path / "cache"))
    with tarfile.open(whole["archive"]) as tar:
        assert {".git/objects/ab/data", "__pycache__/data", "app.pyc", "css/.svn/data"} <= set(tar.getnames())


def test_switch_is_atomic_and_going_back_undoes_the_last_switch(tmp_path):
    for release in ("a", "b", "c"):
        make_release(tmp_path, release)
    layout = lightweb_release.Layout(str(tmp_path))
    assert layout.switch("a")["changed"]
    assert not layout.switch("a")["changed"]
    layout.switch("b")
    layout.switch("c")
    assert os.readlink(tmp_path / "current") == "releases/c"
    assert layout.previous() == "b"
    assert layout.switch("b") == {"changed": True, "current": "b", "before": "c"}  # a rollback
    assert layout.history() == ["a", "b"]
    assert layout.previous() == "a"  # rolling back again walks further back
    layout.switch("c")
    assert layout.history() == ["a", "b", "c"]
    with pytest.raises(SystemExit):
        layout.switch("missing")


def test_prune_keeps_the_newest_current_and_previous_and_their_venvs(tmp_path):
    for n, release in enumerate(["r1", "r2", "r3", "r4"]):
        make_release(tmp_path, release, venv="v%d" % (n // 2))
    layout = lightweb_release.Layout(str(tmp_path))
    for release in ["r1", "r2", "r3", "r4"]:
        layout.switch(release)
    assert layout.status(keep=1)["prunable"] and layout.status(keep=4)["prunable"] is False
    result = layout.prune(1)
    assert result["removed"] == ["r2", "r1"]
    assert layout.listed() == ["r3", "r4"]  # the previous one stays
    assert result["removed_venvs"] == ["v0"]
    assert sorted(os.listdir(tmp_path / "venvs")) == ["v1"]
    assert layout.status(keep=1)["prunable"] is False  # what prune leaves is not prunable again


def test_prune_removes_the_wheels_of_the_virtualenvs_it_removes_and_any_others(tmp_path):
    for n, release in enumerate(["r1", "r2", "r3"]):
        make_release(tmp_path, release, venv="v%d" % n)
    for venv in ["v0", "v1", "v2", "gone"]:
        (tmp_path / "wheels" / venv).mkdir(parents=True)
        (tmp_path / "wheels" / venv / "web_py-0.76-py3-none-any.whl").write_bytes(b"PK")
    # The flat directory of older versions of the role.
    (tmp_path / "wheels" / "flup-1.0.3-py3-none-any.whl").write_bytes(b"PK")
    layout = lightweb_release.Layout(str(tmp_path))
    for release in ["r1", "r2", "r3"]:
        layout.switch(release)
    assert layout.status(keep=2)["prunable"]
    result = layout.prune(2)
    assert result["removed_venvs"] == ["v0"]
    assert result["removed_wheels"] == ["flup-1.0.3-py3-none-any.whl", "gone", "v0"]
    assert sorted(os.listdir(tmp_path / "wheels")) == ["v1", "v2"]
    assert layout.status(keep=2)["prunable"] is False


def test_inspect_reads_what_a_run_checks_before_it_prepares_a_release(tmp_path):
    layout = lightweb_release.Layout(str(tmp_path))
    missing = layout.inspect("r1", sys.executable, "requirements.txt")
    assert missing["directory"] == "" and missing["venv"] == "" and missing["requirements_sha256"] == ""
    assert not missing["complete"] and missing["complete_venvs"] == [] and missing["content_digest"] == ""
    assert missing["python"] == "%d.%d" % sys.version_info[:2]
    path = make_release(tmp_path, "r1", venv="v1")
    path.chmod(0o750)
    (path / "requirements.txt").write_text("web.py==0.76\n")
    (path / ".lightweb-release").write_text("r1 " + "ab" * 32 + "\n")
    (tmp_path / "venvs" / "v2").mkdir()
    (tmp_path / "venvs" / "v2" / ".lightweb-complete").write_text("\n")
    found = layout.inspect("r1", sys.executable, "requirements.txt")
    owner = "%s:%s" % (pwd.getpwuid(os.getuid()).pw_name, grp.getgrgid(os.getgid()).gr_name)
    assert found["directory"] == owner + " 750"
    assert found["complete"] and found["venv"] == "../../venvs/v1"
    assert found["requirements_sha256"] == hashlib.sha256(b"web.py==0.76\n").hexdigest()
    assert found["complete_venvs"] == ["v2"]  # v1 has no marker: pip never finished there
    assert found["content_digest"] == "ab" * 32
    (path / ".lightweb-release").write_text("r1\n")  # as older versions of the role wrote it
    assert layout.inspect("r1", sys.executable, "requirements.txt")["content_digest"] == ""
    # Requirements naming another file: the digest covers both.
    (path / "requirements.txt").write_text("-c pins.txt\n")
    (path / "pins.txt").write_text("web.py==0.76\n")
    assert layout.inspect("r1", sys.executable, "requirements.txt")["requirements_sha256"] == \
        lightweb_release.requirements_digest(str(path / "requirements.txt")) != \
        hashlib.sha256(b"-c pins.txt\n").hexdigest()


def test_inspect_gives_the_platform_tags_pip_accepts_on_the_host(tmp_path):
    """The tags the controller downloads wheels for are those of pip's own
    ranking on this machine, read in this interpreter or, when the venvs
    use another, in that one."""
    layout = lightweb_release.Layout(str(tmp_path))
    accepted = list(platform_tags())
    assert layout.inspect("r1", sys.executable, "requirements.txt")["platforms"] == accepted
    wrapper = tmp_path / "python3"
    wrapper.write_text("#!/bin/sh\nexec %s \"$@\"\n" % sys.executable)
    wrapper.chmod(0o755)
    found = layout.inspect("r1", str(wrapper), "requirements.txt")
    assert found["platforms"] == accepted and found["python"] == "%d.%d" % sys.version_info[:2]


def test_wheel_platforms_of_other_machines_and_c_libraries():
    arm = lightweb_release.wheel_platforms("glibc 2.41", "linux-aarch64")
    assert arm[:3] == ["linux_aarch64", "manylinux_2_41_aarch64", "manylinux_2_40_aarch64"]
    assert arm[-2:] == ["manylinux_2_17_aarch64", "manylinux2014_aarch64"]  # nothing older was made for arm
    x86 = lightweb_release.wheel_platforms("glibc 2.36", "linux-x86_64")
    assert x86.index("manylinux2010_x86_64") == x86.index("manylinux_2_12_x86_64") + 1
    assert x86[-1] == "manylinux1_x86_64" and len(x86) == 1 + 32 + 3
    assert lightweb_release.wheel_platforms("", "linux-x86_64") == ["linux_x86_64"]  # musl: no manylinux


def test_pip_downloads_the_wheels_of_the_host_not_of_the_controller(tmp_path):
    """What venv_wheels.yml runs, for an arm64 host with Python 3.13 and
    glibc 2.41 (Debian 13): a package with compiled wheels comes for that
    host, whatever the machine running the test."""
    platforms = lightweb_release.wheel_platforms("glibc 2.41", "linux-aarch64")
    pip = ([sys.executable, "-m", "pip", "download", "--disable-pip-version-check", "--only-binary=:all:",
            "--python-version=3.13"]
           + ["--platform=" + tag for tag in platforms] + ["MarkupSafe==3.0.2"])
    expected = ["MarkupSafe-3.0.2-cp313-cp313-manylinux_2_17_aarch64.manylinux2014_aarch64.whl"]
    dest = tmp_path / "wheels"
    assert lightweb_release.download(str(dest), pip)["saved"] == expected
    assert [path.name for path in dest.iterdir()] == expected
    # Without the note of that download, pip runs again, finds the wheel
    # there and says so: nothing saved, and the note lists it again.
    note = tmp_path / "wheels.complete"
    assert json.loads(note.read_text())["wheels"] == expected
    note.unlink()
    assert not lightweb_release.download(str(dest), pip)["changed"]
    assert json.loads(note.read_text())["wheels"] == expected


# A stand-in for pip download: notes when it starts and ends in LOG, writes
# one "wheel" into its --dest, as pip does, and says so unless it was there.
FAKE_PIP = """import os, sys, time
log, dest = sys.argv[1], sys.argv[-1][len("--dest="):]
with open(log, "a") as handle:
    handle.write("start\\n")
time.sleep(float(sys.argv[2]))
wheel = os.path.join(dest, "demo-1.0-py3-none-any.whl")
if os.path.exists(wheel):
    print("File was already downloaded " + wheel)
else:
    with open(wheel, "w") as handle:
        handle.write("wheel")
    print("Saved " + wheel)
with open(log, "a") as handle:
    handle.write("end\\n")
"""


def fake_pip(tmp_path, seconds=0.0):
    script = tmp_path / "fake_pip.py"
    script.write_text(FAKE_PIP)
    return [sys.executable, str(script), str(tmp_path / "pip.log"), str(seconds)]


def test_download_reports_what_pip_saved(tmp_path):
    dest = tmp_path / "wheels" / "app-py3.11-linux-v1"
    first = lightweb_release.download(str(dest), fake_pip(tmp_path))
    assert first["changed"] and first["saved"] == ["demo-1.0-py3-none-any.whl"]
    again = lightweb_release.download(str(dest), fake_pip(tmp_path))
    assert not again["changed"] and again["saved"] == []


def test_a_completed_download_is_not_run_again_while_its_wheels_are_there(tmp_path):
    dest, requirements = tmp_path / "wheels" / "v1", tmp_path / "requirements.txt"
    requirements.write_text("demo==1.0\n")
    pip = fake_pip(tmp_path) + ["--requirement=" + str(requirements)]
    lightweb_release.download(str(dest), pip)
    lightweb_release.download(str(dest), pip)
    assert (tmp_path / "pip.log").read_text().split() == ["start", "end"]
    # Requirements of other content, or a wheel gone: pip runs again.
    requirements.write_text("demo==1.0\nother==2.0\n")
    lightweb_release.download(str(dest), pip)
    assert (tmp_path / "pip.log").read_text().split() == ["start", "end"] * 2
    lightweb_release.download(str(dest), pip)
    (dest / "demo-1.0-py3-none-any.whl").unlink()
    assert lightweb_release.download(str(dest), pip)["saved"] == ["demo-1.0-py3-none-any.whl"]
    assert (tmp_path / "pip.log").read_text().split() == ["start", "end"] * 3
    # A file the requirements name, changed alone: pip runs again.
    requirements.write_text("demo==1.0\n-c pins.txt\n")
    (tmp_path / "pins.txt").write_text("demo==1.0\n")
    lightweb_release.download(str(dest), pip)
    (tmp_path / "pins.txt").write_text("demo==1.0\nother==2.0\n")
    lightweb_release.download(str(dest), pip)
    assert (tmp_path / "pip.log").read_text().split() == ["start", "end"] * 5


def test_download_runs_one_pip_at_a_time_per_directory(tmp_path):
    """Hosts alike share a wheel directory: the second waits while the
    first's pip writes the wheels, then finds them there."""
    dest = str(tmp_path / "wheels" / "app-py3.11-linux-v1")
    tool = [sys.executable, lightweb_release.__file__, "download", "--dest", dest, "--"] + fake_pip(tmp_path, 0.5)
    runs = [subprocess.Popen(tool, stdout=subprocess.PIPE, universal_newlines=True) for host in ("app1", "app2")]
    results = [json.loads(run.communicate()[0]) for run in runs]
    assert [run.returncode for run in runs] == [0, 0]
    assert (tmp_path / "pip.log").read_text().split() == ["start", "end"]
    assert sorted(result["changed"] for result in results) == [False, True]


def test_download_fails_as_pip_fails(tmp_path):
    dest = str(tmp_path / "wheels" / "v1")
    tool = [sys.executable, lightweb_release.__file__, "download", "--dest", dest, "--",
            sys.executable, "-c", "import sys; print('Collecting nothing'); sys.exit('no such package')"]
    run = subprocess.run(tool, stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, check=False)
    assert run.returncode == 1 and "Collecting nothing" in run.stdout and "no such package" in run.stderr


def test_download_removes_wheel_directories_unused_for_a_month(tmp_path):
    wheels = tmp_path / "wheels"
    old, recent, busy = (wheels / name for name in ("old", "recent", "busy"))
    for path in (old, recent, busy):
        path.mkdir(parents=True)
        (path / "demo-0.9-py3-none-any.whl").write_text("wheel")
        os.utime(path, (time.time() - lightweb_release.WHEELS_UNUSED_SECONDS - 60,) * 2)
    os.utime(recent, (time.time() - 86400,) * 2)
    (wheels / "notes.txt").write_text("not a wheel directory")
    for note in ("recent.complete", "gone.complete"):  # the second's directory was removed by hand
        (wheels / note).write_text("{}")
        os.utime(wheels / note, (time.time() - lightweb_release.WHEELS_UNUSED_SECONDS - 60,) * 2)
    (wheels / "old.complete").write_text("{}")  # goes with its directory
    # Notes half written by downloads that died, a month ago and just now
    # (its directory since removed: nothing else removes it).
    for note, age in (("recent.complete.tmp", lightweb_release.WHEELS_UNUSED_SECONDS + 60), ("gone.complete.tmp", 60)):
        (wheels / note).write_text("{")
        os.utime(wheels / note, (time.time() - age,) * 2)
    holder = lightweb_release.locked(str(busy))  # a download into it, alongside
    try:
        result = lightweb_release.download(str(wheels / "new"), fake_pip(tmp_path))
    finally:
        os.close(holder)
    assert result["removed"] == [str(old)]
    assert sorted(os.listdir(wheels)) == ["busy", "gone.complete.tmp", "new", "new.complete", "notes.txt",
                                          "recent", "recent.complete"]
    # A directory used again is kept: the download marks it used.
    os.utime(wheels / "new", (time.time() - lightweb_release.WHEELS_UNUSED_SECONDS - 60,) * 2)
    lightweb_release.download(str(wheels / "new"), fake_pip(tmp_path))
    assert time.time() - (wheels / "new").stat().st_mtime < 60


def test_a_lock_awaited_on_a_directory_removed_meanwhile_is_taken_on_the_new_one(tmp_path):
    dest = tmp_path / "wheels" / "v1"
    holder = lightweb_release.locked(str(dest), make=True)
    taken = []
    waiter = threading.Thread(target=lambda: taken.append(lightweb_release.locked(str(dest), make=True)))
    waiter.start()
    time.sleep(0.3)  # the waiter has opened the directory and waits for its lock
    assert waiter.is_alive()
    shutil.rmtree(dest)  # as the removal of unused directories does, holding the lock
    os.close(holder)
    waiter.join(5)
    try:
        assert os.path.samestat(os.fstat(taken[0]), os.stat(dest))
    finally:
        os.close(taken[0])


def serve(listener, status):
    listener.settimeout(2)
    while True:
        try:
            conn, _addr = listener.accept()
        except OSError:
            return
        answer(conn, status)


def answer(conn, status):
    with conn:
        data = b""
        while b"\x05\x00\x01\x00\x00" not in data:  # the empty STDIN record ends the request
            data += conn.recv(4096)
        body = b"Status: %d X\r\nContent-Type: text/plain\r\n\r\nok\n" % status
        conn.sendall(lightweb_fcgi_probe.record(lightweb_fcgi_probe.STDOUT, body)
                     + lightweb_fcgi_probe.record(lightweb_fcgi_probe.END_REQUEST, struct.pack("!IB3x", 0, 0)))


@pytest.mark.parametrize("status, healthy", [(200, True), (500, False)])
def test_probe_reads_the_status_of_a_fastcgi_answer(tmp_path, status, healthy):
    path = str(tmp_path / "s")
    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind(path)
        listener.listen(1)
        server = threading.Thread(target=serve, args=(listener, status))
        server.start()
        result = lightweb_fcgi_probe.check(path, "/health", 200, timeout=3)
        server.join(5)
    assert result[0] is healthy
    assert str(status) in result[1]


def test_probe_reports_a_server_that_does_not_answer(tmp_path):
    healthy, reason = lightweb_fcgi_probe.check(str(tmp_path / "none"), "/health", 200, timeout=0.3)
    assert not healthy and "/health" in reason


# A FastCGI server on fd 0 that answers every request as answer() above and,
# like uWSGI caught while it starts its threads, ignores the signals that
# stop it.
STUBBORN_SERVER = """
import os, signal, socket, sys
sys.path.insert(0, sys.argv[1])
from test_lightweb_release import answer
signal.signal(signal.SIGTERM, signal.SIG_IGN)
signal.signal(signal.SIGHUP, signal.SIG_IGN)
with open(sys.argv[2], "w") as handle:
    handle.write(str(os.getpid()))
listener = socket.socket(fileno=0)
while True:
    answer(listener.accept()[0], 200)
"""


def test_probe_spawn_leaves_no_trial_server_behind(tmp_path, capsys):
    pid_file = tmp_path / "pid"
    command = [sys.executable, "-c", STUBBORN_SERVER, os.path.dirname(__file__), str(pid_file)]
    started = time.monotonic()
    assert lightweb_fcgi_probe.main(["--spawn", "--path", "/health", "--timeout", "10", "--"] + command) == 0
    elapsed = time.monotonic() - started
    assert '"healthy": true' in capsys.readouterr().out
    with pytest.raises(ProcessLookupError):
        os.kill(int(pid_file.read_text()), 0)
    # Waiting for a server that ignores SIGTERM used to hold the probe 10 s.
    assert elapsed < 5, "the probe waited %.1f s for the trial server to stop" % elapsed


@pytest.mark.parametrize("state, started_ago, unit_changed_ago, pending", [
    ("active", 60, 90, True),  # started before the switch 30 s ago: the app runs the release before
    ("active", 10, 90, False),  # restarted after it
    ("active", 30, 90, False),  # within the switch's second: the restart that follows it
    ("inactive", 60, 90, False),  # not running: starting it is the run's other checks' business
    ("active", 20, 15, True),  # restarted after the switch, but its unit file (settings) changed since
    ("active", 10, 15, False),  # restarted after both
])
def test_status_says_when_the_app_runs_since_before_the_last_change(tmp_path, monkeypatch, state, started_ago,
                                                                    unit_changed_ago, pending):
    make_release(tmp_path, "a")
    layout = lightweb_release.Layout(str(tmp_path))
    layout.switch("a")
    now = int(time.time())
    os.utime(layout.current_link, (now - 30, now - 30), follow_symlinks=False)
    unit_file = tmp_path / "webpy-example.service"
    unit_file.write_text("[Service]\n")
    drop_in = tmp_path / "override.conf"
    drop_in.write_text("[Service]\n")
    os.utime(unit_file, (now - 100, now - 100))
    os.utime(drop_in, (now - unit_changed_ago, now - unit_changed_ago))
    # systemctl as `systemctl show --timestamp=unix` answers for the unit.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "systemctl").write_text(
        "#!/bin/sh\necho ActiveState=%s\necho ActiveEnterTimestamp=@%d\necho FragmentPath=%s\n"
        "echo DropInPaths=%s %s\n" % (state, now - started_ago, unit_file, drop_in, tmp_path / "gone.conf"))
    (bin_dir / "systemctl").chmod(0o755)
    monkeypatch.setenv("PATH", "%s:%s" % (bin_dir, os.environ["PATH"]))
    assert layout.status(unit="webpy-example.service")["restart_pending"] is pending
    assert "restart_pending" not in layout.status()


def test_status_of_a_layout_without_a_switch_or_systemd_has_no_restart_pending(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "nowhere"))
    make_release(tmp_path, "a")
    layout = lightweb_release.Layout(str(tmp_path))
    assert layout.status(unit="webpy-example.service")["restart_pending"] is False  # no current yet
    layout.switch("a")
    assert layout.status(unit="webpy-example.service")["restart_pending"] is False  # no systemctl
