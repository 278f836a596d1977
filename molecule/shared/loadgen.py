"""Load generator run on a test host: requests URLs in a loop from a few
threads for a bounded time, a new connection each (as a stream of clients
arrives), and counts every response.

    loadgen.py --url https://10.89.42.11/api/info --threads 4 --interval 0.02 \
               --max-seconds 600 --stop-file /tmp/load.stop --out /tmp/load.json

Stops when the stop file appears or after --max-seconds, then writes a JSON
summary: requests sent and failed, counts by outcome, when each app version
was first and last seen, and the time of every failure. Stdlib only: test
hosts have python3 and nothing else.
"""

import argparse
import collections
import http.client
import json
import os
import ssl
import threading
import time
import urllib.parse

_TLS = ssl.create_default_context()
_TLS.check_hostname = False
_TLS.verify_mode = ssl.CERT_NONE  # test hosts use self-signed certificates


def one_request(url, timeout):
    """(outcome, version): outcome is the status code or the error's name."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme == "https":
        conn = http.client.HTTPSConnection(parts.hostname, parts.port, timeout=timeout, context=_TLS)
    else:
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    try:
        conn.request("GET", parts.path or "/", headers={"Connection": "close"})
        resp = conn.getresponse()
        body = resp.read()
    except (OSError, http.client.HTTPException) as err:
        return type(err).__name__, None
    finally:
        conn.close()
    version = None
    if resp.status == 200 and body.startswith(b"{"):
        try:
            version = str(json.loads(body).get("version"))
        except ValueError:
            pass
    return resp.status, version


def run(urls, threads, max_seconds, stop_file, timeout, interval):
    start = time.time()
    lock = threading.Lock()
    outcomes = collections.Counter()
    versions = {}
    failures = []
    stop = threading.Event()

    def worker(offset):
        n = offset
        while not stop.is_set():
            url = urls[n % len(urls)]
            n += 1
            outcome, version = one_request(url, timeout)
            if interval:
                stop.wait(interval)  # a steady stream, leaving CPU to what is tested
            now = round(time.time() - start, 3)
            with lock:
                outcomes[str(outcome)] += 1
                if outcome != 200:
                    failures.append({"t": now, "url": url, "outcome": str(outcome)})
                if version is not None:
                    seen = versions.setdefault(version, {"first": now, "last": now, "count": 0})
                    seen["last"] = now
                    seen["count"] += 1

    pool = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(threads)]
    for thread in pool:
        thread.start()
    while time.time() - start < max_seconds and not os.path.exists(stop_file):
        time.sleep(0.1)
    stop.set()
    for thread in pool:
        thread.join(timeout + 5)
    sent = sum(outcomes.values())
    return {
        "started": start, "sent": sent, "failed": sent - outcomes.get("200", 0), "seconds": round(time.time() - start, 1),
        "outcomes": dict(outcomes), "versions": versions, "failures": failures[:500],
        "stopped_by": "stop file" if os.path.exists(stop_file) else "time limit",
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", action="append", required=True)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--max-seconds", type=float, default=600)
    parser.add_argument("--stop-file", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--timeout", type=float, default=30, help="seconds a request may take")
    parser.add_argument("--interval", type=float, default=0.0, help="pause of each thread between requests")
    args = parser.parse_args()
    summary = run(args.url, args.threads, args.max_seconds, args.stop_file, args.timeout, args.interval)
    tmp = args.out + ".tmp"
    with open(tmp, "w", encoding="utf-8") as handle:
        json.dump(summary, handle)
    os.replace(tmp, args.out)  # the reader waits for this file, never sees half of it


if __name__ == "__main__":
    main()
