"""Serve a WSGI application (web.py or plain WSGI) over FastCGI with flup.

lighttpd spawns this through ``bin-path`` with the listening socket on fd 0;
systemd hands it a socket the same way (``StandardInput=socket``); or it binds
an address itself with ``--bind``. With ``--workers N`` the process loads the
app once, then forks N workers that accept on the shared socket and replaces
any that die; SIGTERM or SIGINT stops them all.

Why not web.py's own ``app.run()``: web.py guesses FastCGI mode from the
environment, silently falls back to its development server, and starts flup
with request multiplexing on (an extra thread per request, measurably slower).
This launcher decides explicitly and keeps web.py's debug mode off unless asked.
"""

import argparse
import importlib
import os
import signal
import sys
import time


def parse_bind(value):
    """Turn ``--bind`` into flup's bindAddress: None (fd 0), a path, or (host, port)."""
    if value in (None, "", "fd:0"):
        return None
    if value.startswith("unix:"):
        path = value[len("unix:"):]
        if not path.startswith("/"):
            raise ValueError("unix socket path must be absolute: %r" % value)
        return path
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError("expected fd:0, unix:/path or HOST:PORT, got %r" % value)
    return (host.strip("[]") or "0.0.0.0", int(port))


def parse_entry(value):
    """Split ``module:attribute`` into its two parts."""
    module, sep, attribute = value.partition(":")
    if not sep or not module or not attribute:
        raise ValueError("expected module:attribute, got %r" % value)
    return module, attribute


def load_application(entry, debug):
    """Import the entry point with web.py's debug mode set beforehand."""
    try:
        import web  # pylint: disable=import-outside-toplevel
    except ImportError:
        web = None
    if web is not None:
        # Must happen before the app module builds its application and renderers.
        web.config.debug = debug
    module_name, attribute = parse_entry(entry)
    target = getattr(importlib.import_module(module_name), attribute)
    if hasattr(target, "wsgifunc"):
        return target.wsgifunc()
    if not callable(target):
        raise TypeError("%s is neither a web.py application nor a WSGI callable" % entry)
    return target


def drain_on_shutdown(server, timeout=10.0):
    """Make flup finish queued connections when it stops.

    On SIGTERM flup's ThreadPool.shutdown() lets running requests finish but
    silently drops connections still waiting in its work queue; lighttpd
    then answers those with an error. Wait for the queue to empty first.
    """
    pool = server._threadPool  # pylint: disable=protected-access
    stop_pool = pool.shutdown

    def shutdown():
        deadline = time.monotonic() + timeout
        while pool._workQueue and time.monotonic() < deadline:  # pylint: disable=protected-access
            time.sleep(0.01)
        stop_pool()

    pool.shutdown = shutdown
    return server


def queue_when_busy(server):
    """Make a connection wait for a free thread instead of being closed.

    flup's accept loop hands each connection to its thread pool without
    queuing and closes it when every thread is busy; lighttpd counts that as
    a failed backend and answers an error. Queue it instead: it is served as
    soon as a request of this process finishes.
    """
    pool = server._threadPool  # pylint: disable=protected-access
    add_job = pool.addJob

    def add_job_queued(job, allowQueuing=True):  # pylint: disable=invalid-name,unused-argument
        return add_job(job, allowQueuing=True)

    pool.addJob = add_job_queued
    return server


_STOP_SIGNALS = []


def note_stop(signum, _frame):
    """Handler for SIGTERM/SIGINT outside flup's main loop.

    flup handles the stop signal only while it accepts; it then restores the
    previous handler while in-flight requests finish. systemd signals every
    process of the unit and the supervisor forwards its own signal, so a
    second signal often arrives during that drain: with the default handler
    it killed the worker mid-request. Remember it instead.
    """
    _STOP_SIGNALS.append(signum)


def stop_requested():
    return bool(_STOP_SIGNALS)


def stop_on_request(server):
    """Leave flup's accept loop (within a second) once a stop was noted,
    also when the signal came before flup installed its own handler."""
    periodic = server._mainloopPeriodic  # pylint: disable=protected-access

    def mainloop_periodic():
        periodic()
        if stop_requested():
            server._keepGoing = False  # pylint: disable=protected-access

    server._mainloopPeriodic = mainloop_periodic  # pylint: disable=protected-access
    return server


def listen_without_blocking(fd):
    """Make accept() on the inherited listening socket return at once.

    Workers sharing one socket all wake up in select() for each connection;
    those that lose the race would block in accept() (Python retries it
    after signals), deaf to SIGTERM until the next connection arrives, so a
    stop without traffic waited for systemd's SIGKILL. Non-blocking, flup
    gets EAGAIN, loops, and sees the stop request.
    """
    os.set_blocking(fd, False)


def pin_release():
    """Run from the release's own paths, not through the `current` link.

    The app is started as BASE/current/venv/bin/python3 with --app-dir
    BASE/current. A deploy switches that link while this process runs; a
    module imported later must still come from the release it started with.
    """
    real_prefix = os.path.realpath(sys.prefix)
    if real_prefix != sys.prefix and not os.environ.get("LIGHTWEB_PINNED"):
        os.environ["LIGHTWEB_PINNED"] = "1"
        python = os.path.join(real_prefix, "bin", "python3")
        os.execv(python, [python] + sys.argv)


def enter_app_dir(path):
    """Run from the app's real directory, first on the import path."""
    app_dir = os.path.realpath(path)
    os.chdir(app_dir)
    sys.path.insert(0, app_dir)
    return app_dir


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--app-dir", required=True, help="directory holding the app's modules")
    parser.add_argument("--entry", required=True, help="WSGI entry point, module:attribute")
    parser.add_argument("--bind", default=None, help="fd:0 (default), unix:/path or HOST:PORT")
    parser.add_argument("--max-threads", type=int, default=32,
                        help="upper bound of request threads in this process")
    parser.add_argument("--workers", type=int, default=1,
                        help="worker processes sharing the socket (1: serve in this process)")
    parser.add_argument("--debug", action="store_true", help="web.py debug mode (never in production)")
    return parser


def serve_workers(serve, workers, respawn_delay=1.0):
    """Run serve() in `workers` forked children until SIGTERM/SIGINT; replace dead ones."""
    children = set()
    stopping = []

    def spawn():
        pid = os.fork()
        if pid == 0:  # worker
            signal.signal(signal.SIGTERM, note_stop)
            signal.signal(signal.SIGINT, note_stop)
            code = 1
            try:
                serve()
                code = 0
            finally:
                os._exit(code)  # pylint: disable=protected-access
        children.add(pid)

    def stop(signum, _frame):
        stopping.append(signum)
        for pid in list(children):
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for _attempt in range(workers):
        spawn()
    while children:
        try:
            pid, _status = os.wait()
        except ChildProcessError:
            break
        children.discard(pid)
        if not stopping:
            time.sleep(respawn_delay)  # a worker crashing in a loop must not spin
            if not stopping:
                spawn()


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.max_threads < 1 or args.workers < 1:
        raise SystemExit("--max-threads and --workers must be at least 1")
    bind = parse_bind(args.bind)
    if bind is not None and args.workers > 1:
        raise SystemExit("--workers above 1 needs the socket on fd 0 (from systemd or lighttpd), not --bind")
    # web.py builds links from REAL_SCRIPT_NAME; the front-end rewrites every
    # path to the FastCGI prefix, which must not leak into generated URLs.
    os.environ.setdefault("REAL_SCRIPT_NAME", "")
    pin_release()
    enter_app_dir(args.app_dir)
    application = load_application(args.entry, args.debug)

    if bind is None:
        listen_without_blocking(0)

    from flup.server.fcgi import WSGIServer  # pylint: disable=import-outside-toplevel

    def serve():
        server = WSGIServer(application, bindAddress=bind, multiplexed=False,
                            maxThreads=args.max_threads, debug=False)
        stop_on_request(drain_on_shutdown(queue_when_busy(server))).run()

    if args.workers == 1:
        signal.signal(signal.SIGTERM, note_stop)
        signal.signal(signal.SIGINT, note_stop)
        serve()
    else:
        serve_workers(serve, args.workers)


if __name__ == "__main__":
    main()
