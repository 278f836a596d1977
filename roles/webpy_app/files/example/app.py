"""Example web.py application shipped with lightweb.webpy.

It exercises every part of the stack: a page rendered from a template that
pulls a stylesheet and an image from /sta (served by lighttpd, never by this
app), a JSON endpoint naming the process that answered, and a form that
POSTs back. Every request the app receives is appended to its request log,
which is how the tests prove which requests reached the app.
"""

import json
import logging
import os
import socket

import web

VERSION = os.environ.get("LIGHTWEB_APP_VERSION", "1")

urls = (
    "/", "Index",
    "/api/info", "Info",
    "/echo", "Echo",
    "/health", "Health",
)

render = web.template.render(
    os.path.join(os.path.dirname(os.path.abspath(__file__)), "templates"),
    base="layout",
    globals={"ctx": web.ctx},
)

request_log = logging.getLogger("lightweb.requests")


def _setup_request_log():
    path = os.environ.get("LIGHTWEB_REQUEST_LOG")
    if not path or request_log.handlers:
        return
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(process)d %(message)s"))
    request_log.addHandler(handler)
    request_log.setLevel(logging.INFO)
    request_log.propagate = False


def log_request(handler):
    """Record method and full path of each request this process serves."""
    request_log.info("%s %s", web.ctx.method, web.ctx.fullpath)
    return handler()


class Index:
    def GET(self):
        return render.index(socket.gethostname(), VERSION)


class Info:
    def GET(self):
        web.header("Content-Type", "application/json")
        web.header("Cache-Control", "no-store")
        return json.dumps({
            "app": "lightweb-example",
            "version": VERSION,
            "host": socket.gethostname(),
            "pid": os.getpid(),
        })


class Echo:
    def GET(self):
        return render.echo(None)

    def POST(self):
        form = web.input(message="")
        return render.echo(form.message[:500])


class Health:
    def GET(self):
        web.header("Content-Type", "text/plain")
        web.header("Cache-Control", "no-store")
        return "ok\n"


_setup_request_log()
app = web.application(urls, globals())
app.add_processor(log_request)
