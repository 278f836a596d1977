"""WSGI entry point of the app for uWSGI: ``--module lightweb_wsgi:application``.

uWSGI starts in the release directory (``--chdir``) with its virtualenv
(``--virtualenv``); the app's ``module:attribute`` comes in
LIGHTWEB_WSGI_ENTRY and web.py's debug mode in LIGHTWEB_DEBUG ("1" turns it
on). The app is loaded the way the flup launcher (lightweb_fcgi.py) loads it.
"""

import os
import sys

from lightweb_fcgi import enter_app_dir, load_application


def pin_release():
    """Resolve the `current` link in every import path.

    uWSGI is started through BASE/current; a deploy switches that link while
    this process runs, and a module imported later must still come from the
    release it started with.
    """
    sys.path[:] = [os.path.realpath(path) if path else path for path in sys.path]
    enter_app_dir(os.getcwd())


def load():
    entry = os.environ.get("LIGHTWEB_WSGI_ENTRY", "")
    if not entry:
        raise RuntimeError("LIGHTWEB_WSGI_ENTRY is not set (expected module:attribute)")
    pin_release()
    return load_application(entry, os.environ.get("LIGHTWEB_DEBUG") == "1")


application = load()
