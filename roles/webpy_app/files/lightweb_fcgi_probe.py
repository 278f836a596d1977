#!/usr/bin/python3
"""Health check of a web.py app over FastCGI, the way lighttpd talks to it.

    lightweb_fcgi_probe.py --connect 127.0.0.1:9000 --path /health
    lightweb_fcgi_probe.py --spawn --user webpy --group webpy --env K=V -- CMD...

--connect asks a running FastCGI server. --spawn starts CMD as the given
account with a fresh unix socket on fd 0 (as lighttpd and systemd hand it
over), asks it, and kills it: a release is tried before it is switched in.
The check passes when the path answers the expected status within the
timeout. Prints one JSON object; exits 1 when the check fails.
"""

import argparse
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time

FCGI_VERSION = 1
BEGIN_REQUEST, END_REQUEST, PARAMS, STDIN, STDOUT, STDERR = 1, 3, 4, 5, 6, 7
RESPONDER = 1


def record(kind, content, request_id=1):
    return struct.pack("!BBHHBx", FCGI_VERSION, kind, request_id, len(content), 0) + content


def encode_params(params):
    out = b""
    for name, value in params.items():
        name, value = name.encode(), value.encode()
        for length in (len(name), len(value)):
            out += struct.pack("!B", length) if length < 128 else struct.pack("!I", length | 0x80000000)
        out += name + value
    return out


def read_exactly(conn, size):
    data = b""
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        if not chunk:
            raise ConnectionError("connection closed before the response ended")
        data += chunk
    return data


def fcgi_get(address, path, timeout):
    """One GET over FastCGI; returns (status, body)."""
    if isinstance(address, str):
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        conn.settimeout(timeout)
        conn.connect(address)
    else:
        conn = socket.create_connection(address, timeout=timeout)
    with conn:
        uri, _sep, query = path.partition("?")
        params = {
            "GATEWAY_INTERFACE": "CGI/1.1", "REQUEST_METHOD": "GET", "REQUEST_URI": path,
            "SCRIPT_NAME": "", "PATH_INFO": uri, "QUERY_STRING": query,
            "SERVER_NAME": "localhost", "SERVER_PORT": "80", "SERVER_PROTOCOL": "HTTP/1.1",
            "REMOTE_ADDR": "127.0.0.1", "HTTP_HOST": "localhost", "HTTP_USER_AGENT": "lightweb-fcgi-probe",
        }
        conn.sendall(record(BEGIN_REQUEST, struct.pack("!HB5x", RESPONDER, 0))
                     + record(PARAMS, encode_params(params)) + record(PARAMS, b"") + record(STDIN, b""))
        stdout = b""
        while True:
            _version, kind, _rid, length, padding = struct.unpack("!BBHHBx", read_exactly(conn, 8))
            content = read_exactly(conn, length + padding)[:length]
            if kind == STDOUT:
                stdout += content
            elif kind == END_REQUEST:
                break
    head, _sep, body = stdout.partition(b"\r\n\r\n")
    status = 200
    for line in head.split(b"\r\n"):
        name, _sep, value = line.partition(b":")
        if name.strip().lower() == b"status":
            status = int(value.split()[0])
    return status, body


def parse_connect(value):
    if value.startswith("unix:"):
        return value[len("unix:"):]
    host, _sep, port = value.rpartition(":")
    return (host.strip("[]") or "127.0.0.1", int(port))


def check(address, path, expect, timeout, alive=lambda: None, attempt_timeout=None):
    """Ask until the expected status comes back or the timeout passes."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    while True:
        dead = alive()
        if dead:
            return False, dead
        try:
            remaining = max(0.5, deadline - time.monotonic())
            status, body = fcgi_get(address, path, min(remaining, attempt_timeout or remaining))
            if status == expect:
                return True, "%s answered %d" % (path, status)
            last = "%s answered %d instead of %d: %s" % (
                path, status, expect, body[:200].decode("utf-8", "replace").strip())
        except (OSError, ValueError, struct.error) as err:
            last = "%s: %s" % (path, err)
        if time.monotonic() >= deadline:
            return False, last
        time.sleep(0.2)


def spawn_and_check(args):
    workdir = tempfile.mkdtemp(prefix="lightweb-probe-")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    log = tempfile.TemporaryFile()
    child = None
    try:
        path = os.path.join(workdir, "fcgi.sock")
        listener.bind(path)
        listener.listen(16)
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin"}
        env.update(item.split("=", 1) for item in args.env)
        child = subprocess.Popen(  # pylint: disable=consider-using-with
            args.command, stdin=listener.fileno(), stdout=log, stderr=log, env=env, cwd="/",
            user=args.user, group=args.group, extra_groups=[] if args.user else None, start_new_session=True)

        def alive():
            if child.poll() is None:
                return None
            log.seek(0)
            tail = log.read().decode("utf-8", "replace").strip().splitlines()[-5:]
            return "the app exited with status %d on start: %s" % (child.returncode, " | ".join(tail))

        # Short attempts, so that a child dying on start is noticed at once.
        return check(path, args.path, args.expect, args.timeout, alive, attempt_timeout=2.0)
    finally:
        # The trial server holds no request once the check is over, so it is
        # killed, not stopped: uWSGI still starting its threads can hang on
        # SIGTERM or SIGHUP, and waiting for it held a third of the deploys
        # on the test hosts for 10 s.
        if child is not None and child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()
        listener.close()
        log.close()
        shutil.rmtree(workdir, ignore_errors=True)


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--connect", type=parse_connect, help="HOST:PORT or unix:/path of a running server")
    target.add_argument("--spawn", action="store_true", help="start COMMAND on a private socket and ask it")
    parser.add_argument("--path", default="/health", help="path that must answer (default /health)")
    parser.add_argument("--expect", type=int, default=200, help="status it must answer (default 200)")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for that answer")
    parser.add_argument("--user", help="--spawn: account to run COMMAND as")
    parser.add_argument("--group", help="--spawn: group to run COMMAND as")
    parser.add_argument("--env", action="append", default=[], help="--spawn: NAME=VALUE for COMMAND")
    parser.add_argument("command", nargs="*", help="--spawn: the FastCGI server's command line")
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.spawn and not args.command:
        raise SystemExit("--spawn needs the command to start")
    if args.spawn:
        healthy, reason = spawn_and_check(args)
    else:
        # Attempts of a few seconds: a server restarting in a loop behind its
        # socket unit accepts the connection but may never answer it.
        healthy, reason = check(args.connect, args.path, args.expect, args.timeout, attempt_timeout=5.0)
    json.dump({"healthy": healthy, "reason": reason}, sys.stdout)
    sys.stdout.write("\n")
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main())
