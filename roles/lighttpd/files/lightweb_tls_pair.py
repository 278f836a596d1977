"""Whether a PEM certificate and a PEM private key belong together.

    echo '{"certificate": "...", "private_key": "..."}' | python3 lightweb_tls_pair.py

Run on the controller, with the Python that runs Ansible (ansible-core
needs the cryptography package): the pair is checked before any host is
changed. Reads one JSON object on stdin, never echoes the key, and prints
one JSON object: {"ok": true} or {"ok": false, "reason": "..."} (exit 1).
"""

import json
import sys

from cryptography import x509
from cryptography.hazmat.primitives import serialization


def public_der(key):
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def check(certificate, private_key):
    """None when the pair belongs together, else why not."""
    try:
        # The first certificate of a chain is the server's own.
        cert = x509.load_pem_x509_certificate(certificate.encode())
    except ValueError as err:
        return "lighttpd_tls_certificate is not a PEM certificate (%s)" % err
    try:
        key = serialization.load_pem_private_key(private_key.encode(), password=None)
    except TypeError:
        return "lighttpd_tls_private_key is encrypted: lighttpd needs it without a passphrase"
    except ValueError:
        return "lighttpd_tls_private_key is not a PEM private key"
    if public_der(cert.public_key()) != public_der(key.public_key()):
        return "lighttpd_tls_private_key is not the key of lighttpd_tls_certificate (their public keys differ)"
    return None


def main():
    pair = json.load(sys.stdin)
    reason = check(pair["certificate"], pair["private_key"])
    print(json.dumps({"ok": False, "reason": reason} if reason else {"ok": True}))
    return 1 if reason else 0


if __name__ == "__main__":
    sys.exit(main())
