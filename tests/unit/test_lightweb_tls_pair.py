"""Unit tests of the lighttpd role's certificate and key pairing check."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "molecule" / "shared"))

from lightweb_testlib import self_signed_pair  # noqa: E402  pylint: disable=wrong-import-position

SCRIPT = Path(__file__).resolve().parents[2] / "roles" / "lighttpd" / "files" / "lightweb_tls_pair.py"


def run(certificate, private_key):
    result = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True, check=False,
                            input=json.dumps({"certificate": certificate, "private_key": private_key}))
    return result.returncode, json.loads(result.stdout)


def test_a_certificate_and_its_own_key_pass():
    cert, key = self_signed_pair("a")
    assert run(cert, key) == (0, {"ok": True})


def test_a_chain_is_checked_by_its_first_certificate():
    cert, key = self_signed_pair("a")
    issuer = self_signed_pair("b")[0]
    assert run(cert + issuer, key)[0] == 0
    assert run(issuer + cert, key)[0] == 1


@pytest.mark.parametrize("case, reason", [
    ("other key", "lighttpd_tls_private_key is not the key of lighttpd_tls_certificate"),
    ("encrypted key", "lighttpd_tls_private_key is encrypted"),
    ("certificate as key", "lighttpd_tls_private_key is not a PEM private key"),
    ("key as certificate", "lighttpd_tls_certificate is not a PEM certificate"),
])
def test_a_pair_that_does_not_belong_together_fails_naming_the_variable(case, reason):
    cert, key = self_signed_pair("a")
    other_cert, other_key = self_signed_pair("b", passphrase=b"secret" if case == "encrypted key" else None)
    given = {"other key": (cert, other_key), "encrypted key": (other_cert, other_key),
             "certificate as key": (cert, cert), "key as certificate": (key, key)}[case]
    code, answer = run(*given)
    assert code == 1
    assert answer["ok"] is False
    assert answer["reason"].startswith(reason)
    # The key never comes back out.
    assert "PRIVATE KEY" not in answer["reason"]
