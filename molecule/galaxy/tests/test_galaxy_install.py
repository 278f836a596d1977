"""The collection installed from its Galaxy tarball provisions a working stack."""

import json
import os
from pathlib import Path

from lightweb_testlib import EXAMPLE_APP, host_address, http, wait_for


def test_collection_was_installed_from_the_tarball():
    installed = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"], "galaxy", "collections",
                     "ansible_collections", "lightweb", "webpy")
    manifest = json.loads((installed / "MANIFEST.json").read_text())
    assert manifest["collection_info"]["namespace"] == "lightweb"
    assert manifest["collection_info"]["name"] == "webpy"
    assert (installed / "playbooks" / "site.yml").is_file()
    # Development files stay out of the released artifact.
    for left_out in ("molecule", "scripts", ".ci", "requirements-dev.txt", "bench"):
        assert not (installed / left_out).exists(), left_out


def test_installed_collection_serves_the_example_app(host):
    addr = host_address(host)
    page = wait_for(addr, "/")
    assert "Hello from web.py behind lighttpd" in page.text
    css = http(addr, "/sta/style.css")
    assert css.status == 200
    assert css.body == (EXAMPLE_APP / "sta" / "style.css").read_bytes()
    assert http(addr, "/api/info").json()["host"] == host.check_output("hostname")
