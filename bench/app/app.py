"""Benchmark app: the smallest web.py routes that isolate the stack's cost.

/hello  a plain-text answer, no template: what the server stack adds.
/io     the same after 20 ms of simulated I/O (a sleep), as a database call.
/health what the collection's release check asks for.

`python app.py PORT` runs it under web.py's own HTTP server (for comparison).
"""

import time

import web

# Set before the application is built: debug mode reloads code per request.
web.config.debug = False

urls = (
    "/hello", "Hello",
    "/io", "SimulatedIO",
    "/health", "Health",
)


class Hello:
    def GET(self):
        web.header("Content-Type", "text/plain")
        return "Hello, world!\n"


class SimulatedIO:
    def GET(self):
        time.sleep(0.020)
        web.header("Content-Type", "text/plain")
        return "waited 20 ms\n"


class Health:
    def GET(self):
        web.header("Content-Type", "text/plain")
        return "ok\n"


app = web.application(urls, globals())
# gunicorn serves a WSGI callable: `gunicorn app:wsgi`.
wsgi = app.wsgifunc()

if __name__ == "__main__":
    app.run()
