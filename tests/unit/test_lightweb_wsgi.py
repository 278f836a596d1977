"""Unit tests of the module through which uWSGI loads the app."""

import json
import os
import subprocess
import sys
from pathlib import Path

FILES = Path(__file__).resolve().parents[2] / "roles" / "webpy_app" / "files"

# Imports the entry module as uWSGI does (from the release directory, reached
# through the `current` link), switches the link, then imports a module the
# app had not loaded yet.
_LOAD = r"""
import json, os, sys
import lightweb_wsgi
os.replace(os.environ["NEXT_LINK"], os.path.join(os.environ["BASE"], "current"))
import late
body = b"".join(lightweb_wsgi.application({}, lambda status, headers: None))
print(json.dumps({"body": body.decode(), "late": late.RELEASE, "cwd": os.getcwd()}))
"""


def _release(base, name):
    release = base / "releases" / name
    release.mkdir(parents=True)
    (release / "site_app.py").write_text(
        "class App:\n"
        "    def wsgifunc(self):\n"
        "        return lambda environ, start: [b'served by %s']\n"
        "app = App()\n" % name)
    # Like the release's virtualenv: on the import path through the link.
    (release / "lib").mkdir()
    (release / "lib" / "late.py").write_text("RELEASE = %r\n" % name)
    return release


def _run(tmp_path, entry):
    base = tmp_path / "base"
    first = _release(base, "r1")
    _release(base, "r2")
    (base / "current").symlink_to(first)
    (base / "next").symlink_to(base / "releases" / "r2")
    env = dict(os.environ, LIGHTWEB_WSGI_ENTRY=entry, PYTHONPATH=os.pathsep.join([str(FILES), str(base / "current" / "lib")]),
               BASE=str(base), NEXT_LINK=str(base / "next"))
    return subprocess.run([sys.executable, "-c", _LOAD], cwd=str(base / "current"), env=env,
                          capture_output=True, text=True, timeout=30, check=False), first


def test_serves_the_wsgifunc_of_a_webpy_style_app_and_stays_on_its_release(tmp_path):
    proc, first = _run(tmp_path, "site_app:app")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["body"] == "served by r1"
    # The link moved to r2 after the start; a later import still comes from r1.
    assert out["late"] == "r1"
    assert out["cwd"] == str(first.resolve())


def test_fails_without_an_entry_point(tmp_path):
    proc, _first = _run(tmp_path, "")
    assert proc.returncode != 0
    assert "LIGHTWEB_WSGI_ENTRY" in proc.stderr
