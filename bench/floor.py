"""The floor: call the app's WSGI callable in-process, no server at all.

Run with the app's virtualenv Python inside a test host, from the app's
directory; prints CPU and wall microseconds per call of the given path.
"""

import io
import json
import sys
import time

sys.path.insert(0, ".")
import app  # noqa: E402  (the bench app, from the current directory)

PATH = sys.argv[1] if len(sys.argv) > 1 else "/hello"
COUNT = int(sys.argv[2]) if len(sys.argv) > 2 else 20000


def start_response(_status, _headers, _exc_info=None):
    return None


def environ():
    return {
        "REQUEST_METHOD": "GET", "PATH_INFO": PATH, "SCRIPT_NAME": "",
        "QUERY_STRING": "", "SERVER_NAME": "bench", "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1", "REMOTE_ADDR": "127.0.0.1",
        "HTTP_HOST": "bench", "wsgi.input": io.BytesIO(b""),
        "wsgi.errors": sys.stderr, "wsgi.url_scheme": "http",
        "wsgi.version": (1, 0), "wsgi.multithread": False,
        "wsgi.multiprocess": False, "wsgi.run_once": False,
    }


def run(count):
    for _request in range(count):
        b"".join(app.wsgi(environ(), start_response))


run(COUNT // 10)  # warm up
cpu, wall = time.process_time(), time.perf_counter()
run(COUNT)
cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
print(json.dumps({"path": PATH, "calls": COUNT,
                  "cpu_us": cpu / COUNT * 1e6, "wall_us": wall / COUNT * 1e6}))
