"""Unit tests of the FastCGI launcher shipped by the webpy_app role."""

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "roles" / "webpy_app" / "files"))

import lightweb_fcgi  # noqa: E402  pylint: disable=wrong-import-position


@pytest.mark.parametrize("value, expected", [
    (None, None),
    ("", None),
    ("fd:0", None),
    ("unix:/run/webpy/app.sock", "/run/webpy/app.sock"),
    ("127.0.0.1:9000", ("127.0.0.1", 9000)),
    (":9000", ("0.0.0.0", 9000)),
    ("[::1]:9000", ("::1", 9000)),
])
def test_parse_bind_accepts(value, expected):
    assert lightweb_fcgi.parse_bind(value) == expected


@pytest.mark.parametrize("value", ["unix:relative.sock", "127.0.0.1", "host:0", "host:70000", "host:http"])
def test_parse_bind_rejects(value):
    with pytest.raises(ValueError):
        lightweb_fcgi.parse_bind(value)


def test_parse_entry():
    assert lightweb_fcgi.parse_entry("pkg.module:app") == ("pkg.module", "app")
    for bad in ("app", ":app", "app:", ""):
        with pytest.raises(ValueError):
            lightweb_fcgi.parse_entry(bad)


def test_load_application_serves_wsgi_callables(tmp_path, monkeypatch):
    (tmp_path / "plainwsgi.py").write_text(
        "def application(environ, start_response):\n"
        "    start_response('200 OK', [('Content-Type', 'text/plain')])\n"
        "    return [b'plain']\n"
        "NOT_CALLABLE = 42\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    app = lightweb_fcgi.load_application("plainwsgi:application", debug=False)
    seen = {}
    body = app({}, lambda status, headers: seen.update(status=status))
    assert list(body) == [b"plain"] and seen["status"] == "200 OK"
    with pytest.raises(TypeError):
        lightweb_fcgi.load_application("plainwsgi:NOT_CALLABLE", debug=False)


def test_load_application_unwraps_webpy_apps(tmp_path, monkeypatch):
    (tmp_path / "fakewebpy.py").write_text(
        "class App:\n"
        "    def wsgifunc(self):\n"
        "        return 'the wsgi function'\n"
        "app = App()\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    assert lightweb_fcgi.load_application("fakewebpy:app", debug=False) == "the wsgi function"


def test_main_rejects_zero_threads():
    with pytest.raises(SystemExit):
        lightweb_fcgi.main(["--app-dir", "/", "--entry", "a:b", "--max-threads", "0"])


def _children(pid):
    with open("/proc/%d/task/%d/children" % (pid, pid)) as handle:
        return {int(c) for c in handle.read().split()}


def _wait_until(predicate, seconds=10):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_serve_workers_keeps_n_workers_and_stops_them_all():
    launcher_dir = Path(lightweb_fcgi.__file__).parent
    # Each fake worker serves until a stop is requested, as flup's loop does.
    code = ("import sys, time; sys.path.insert(0, %r); import lightweb_fcgi\n"
            "def serve():\n"
            "    while not lightweb_fcgi.stop_requested():\n"
            "        time.sleep(0.05)\n"
            "lightweb_fcgi.serve_workers(serve, 3, respawn_delay=0.05)\n" % str(launcher_dir))
    parent = subprocess.Popen([sys.executable, "-c", code])
    try:
        assert _wait_until(lambda: len(_children(parent.pid)) == 3)
        first = _children(parent.pid)
        victim = sorted(first)[0]
        os.kill(victim, signal.SIGKILL)
        assert _wait_until(lambda: len(_children(parent.pid)) == 3 and victim not in _children(parent.pid))
        workers = _children(parent.pid)
        parent.send_signal(signal.SIGTERM)
        assert parent.wait(timeout=10) == 0
        for pid in workers:
            assert _wait_until(lambda pid=pid: not os.path.exists("/proc/%d" % pid) or
                               open("/proc/%d/stat" % pid).read().split()[2] == "Z")
    finally:
        if parent.poll() is None:
            parent.kill()


def test_main_refuses_several_workers_on_a_bind_address():
    with pytest.raises(SystemExit):
        lightweb_fcgi.main(["--app-dir", "/", "--entry", "a:b", "--workers", "2", "--bind", "127.0.0.1:9000"])


def test_drain_on_shutdown_waits_for_queued_connections():
    class Pool:
        def __init__(self):
            self._workQueue = ["queued connection"]
            self.stopped_with = None

        def shutdown(self):
            self.stopped_with = list(self._workQueue)

    class Server:
        _threadPool = Pool()

    server = lightweb_fcgi.drain_on_shutdown(Server(), timeout=5)
    pool = server._threadPool  # pylint: disable=protected-access
    # A worker thread picks up the queued connection 0.2 s later.
    threading.Timer(0.2, pool._workQueue.clear).start()  # pylint: disable=protected-access
    started = time.monotonic()
    pool.shutdown()
    assert pool.stopped_with == []
    assert 0.15 < time.monotonic() - started < 5


def test_a_second_stop_signal_never_kills_a_draining_worker():
    # flup restores the previous handler while requests drain; that handler
    # must only note the signal (the default one killed requests midway).
    launcher_dir = Path(lightweb_fcgi.__file__).parent
    code = ("import os, signal, sys, time; sys.path.insert(0, %r); import lightweb_fcgi\n"
            "def serve():\n"
            "    while not lightweb_fcgi.stop_requested():\n"
            "        time.sleep(0.05)\n"
            "    os.kill(os.getpid(), signal.SIGTERM)  # a second signal while draining\n"
            "    time.sleep(0.5)\n"
            "    sys.stdout.write('drained\\n'); sys.stdout.flush()\n"
            "lightweb_fcgi.serve_workers(serve, 1, respawn_delay=0.05)\n" % str(launcher_dir))
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert _wait_until(lambda: len(_children(parent.pid)) == 1)
        parent.send_signal(signal.SIGTERM)
        out, _err = parent.communicate(timeout=10)
        assert parent.returncode == 0
        assert out == "drained\n"
    finally:
        if parent.poll() is None:
            parent.kill()


def test_stop_on_request_leaves_the_accept_loop():
    class Server:
        _keepGoing = True
        periodic_calls = 0

        def _mainloopPeriodic(self):  # pylint: disable=invalid-name
            self.periodic_calls += 1

    server = lightweb_fcgi.stop_on_request(Server())
    server._mainloopPeriodic()  # pylint: disable=protected-access
    assert server._keepGoing  # pylint: disable=protected-access
    lightweb_fcgi.note_stop(signal.SIGTERM, None)
    try:
        server._mainloopPeriodic()  # pylint: disable=protected-access
        assert not server._keepGoing  # pylint: disable=protected-access
        assert server.periodic_calls == 2
    finally:
        lightweb_fcgi._STOP_SIGNALS.clear()  # pylint: disable=protected-access


def test_inherited_listening_socket_does_not_block_accept():
    import socket  # pylint: disable=import-outside-toplevel
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        lightweb_fcgi.listen_without_blocking(listener.fileno())
        with pytest.raises(BlockingIOError):
            listener.accept()


def test_connections_beyond_the_threads_wait_instead_of_failing(tmp_path):
    # Real flup, 16 requests of 0.3 s at once. flup starts 5 threads (its
    # maxSpare, even above maxThreads) and alone closes the connections it
    # has no idle thread for; the launcher makes them wait.
    import lightweb_fcgi_probe  # pylint: disable=import-outside-toplevel
    (tmp_path / "slow.py").write_text(
        "import time\n"
        "def application(environ, start_response):\n"
        "    time.sleep(0.3)\n"
        "    start_response('200 OK', [('Content-Type', 'text/plain')])\n"
        "    return [b'done']\n"
    )
    sock = str(tmp_path / "fcgi.sock")
    server = subprocess.Popen([sys.executable, lightweb_fcgi.__file__, "--app-dir", str(tmp_path),
                               "--entry", "slow:application", "--bind", "unix:" + sock, "--max-threads", "2"])
    try:
        deadline = time.monotonic() + 10
        while not os.path.exists(sock) and time.monotonic() < deadline:
            time.sleep(0.05)
        results = []

        def ask():
            try:
                results.append(lightweb_fcgi_probe.fcgi_get(sock, "/", timeout=10))
            except OSError as err:
                results.append(err)

        clients = [threading.Thread(target=ask) for _client in range(16)]
        for client in clients:
            client.start()
        for client in clients:
            client.join(15)
    finally:
        server.terminate()
        server.wait(10)
    assert results == [(200, b"done")] * 16
