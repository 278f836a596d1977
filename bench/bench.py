"""Benchmark the lightweb.webpy stack end to end (issue #6); see BENCHMARKS.md.

Creates the test hosts, provisions them with this collection (timed), adds
the comparison servers next to them, then runs wrk against every layout,
one run of each layout per round so that load from anything else on the
machine falls on all of them alike, and reports medians. Writes
bench/results/<stamp>.json and .md.
"""

import argparse
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import hosts
from hosts import pexec, run

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
SINGLE, FE1, FE2 = "lightweb-bench-single", "lightweb-bench-fe1", "lightweb-bench-fe2"
APPS = ["lightweb-bench-app1", "lightweb-bench-app2", "lightweb-bench-app3"]
IP = hosts.HOSTS
PROCS = 4  # app processes of the single-host stack, and of gunicorn against it
IO_MS = 20
PROPOSALS = True  # also measure the configurations before this round's changes
APP_DIR = "/srv/webpy/current"
# The app under flup as the collection ran it before uWSGI was the default.
FLUP_COMMAND = (APP_DIR + "/venv/bin/python3 /srv/webpy/bin/lightweb_fcgi.py --app-dir " + APP_DIR
                + " --entry app:app --max-threads 32")


def log(message):
    print("[%s] %s" % (time.strftime("%H:%M:%S"), message), flush=True)


# --- provisioning -----------------------------------------------------------

def machine_cpu():
    """Busy and stolen CPU seconds of the whole machine so far (/proc/stat)."""
    with open("/proc/stat", encoding="ascii") as handle:
        user, nice, system, _idle, _iowait, irq, softirq, steal = [int(v) for v in handle.readline().split()[1:9]]
    hertz = os.sysconf("SC_CLK_TCK")
    return (user + nice + system + irq + softirq) / hertz, steal / hertz


def playbook(name, limit, env=None, timing=False, extra=()):
    """Run a playbook; return wall seconds, the summed PLAY RECAP and CPU
    seconds: of ansible-playbook and its processes (the controller), of the
    whole machine, which runs the hosts too, and of each host. With timing, also each
    play's and each task's wall time (callback_plugins/bench_timing.py)."""
    env = dict(os.environ, **(env or {}))
    cpu_files = hosts.cpu_files()
    if timing:
        timing_file = os.path.join(HERE, "results", ".timing-%d.json" % os.getpid())
        env.update(ANSIBLE_CALLBACK_PLUGINS=os.path.join(HERE, "callback_plugins"),
                   ANSIBLE_CALLBACKS_ENABLED="bench_timing", LIGHTWEB_BENCH_TIMING=timing_file,
                   LIGHTWEB_BENCH_CPU_FILES=json.dumps(cpu_files))
    hosts_before = {name: hosts.read_cpu(path) for name, path in cpu_files.items()}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    busy_before, steal_before = machine_cpu()
    started = time.monotonic()
    proc = subprocess.run(
        ["ansible-playbook", "-i", os.path.join(HERE, "inventory.yml"), name, "--limit", limit, *extra],
        capture_output=True, text=True, cwd=REPO, check=False, env=env)
    seconds = time.monotonic() - started
    busy, steal = machine_cpu()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    hosts_after = {name: hosts.read_cpu(path) for name, path in cpu_files.items()}
    if proc.returncode != 0:
        raise RuntimeError("%s failed:\n%s" % (name, proc.stdout[-3000:]))
    recap = {"ok": 0, "changed": 0}
    for line in proc.stdout.split("PLAY RECAP")[-1].splitlines():
        for key in recap:
            found = re.search(r"\b%s=(\d+)" % key, line)
            recap[key] += int(found.group(1)) if found else 0
    out = {"seconds": round(seconds, 1), **recap,
           "controller_cpu": round(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime, 1),
           "machine_cpu": round(busy - busy_before, 1), "steal": round(steal - steal_before, 1),
           "hosts_cpu": {name: round(hosts_after[name] - hosts_before[name], 2) for name in cpu_files}}
    if timing:
        with open(timing_file, encoding="utf-8") as handle:
            out["timing"] = json.load(handle)
        os.unlink(timing_file)
    return out


# The same hosts over `podman exec` instead of SSH (bench/inventory.yml):
# one no-op re-run and one one-task run, to show what the connection costs.
OVER_PODMAN = {"LIGHTWEB_BENCH_CONNECTION": "podman"}


# SSH connections kept open by Ansible (ControlPersist) must not outlive
# the hosts they reach: each set of new hosts gets a control directory of
# its own.
SSH_CONTROL_DIRS = tempfile.mkdtemp(prefix="lightweb-bench-ssh-")


def new_hosts():
    """The test hosts, created anew: a fresh converge starts from the image."""
    os.environ["ANSIBLE_SSH_CONTROL_PATH_DIR"] = tempfile.mkdtemp(dir=SSH_CONTROL_DIRS)
    hosts.destroy()
    hosts.create()
    with open(os.path.join(HERE, ".ssh", "id_ed25519.pub"), encoding="utf-8") as handle:
        hosts.enable_ssh(handle.read())


# A release of an app of some size: the bench app with this many more
# modules and as many more static files, 2 KiB each.
MORE_FILES = 100


def larger_release():
    """A copy of the bench app with MORE_FILES more modules and static files."""
    path = os.path.join(tempfile.mkdtemp(prefix="lightweb-bench-app-"), "app")
    shutil.copytree(os.path.join(HERE, "app"), path)
    os.makedirs(os.path.join(path, "lib"))
    os.makedirs(os.path.join(path, "sta", "more"))
    for number in range(MORE_FILES):
        with open(os.path.join(path, "lib", "module_%03d.py" % number), "w", encoding="utf-8") as handle:
            handle.write("# module %d\n" % number + "VALUE = %r\n" % ("x" * 2000))
        with open(os.path.join(path, "sta", "more", "asset_%03d.css" % number), "w", encoding="utf-8") as handle:
            handle.write("/* asset %d */\n" % number + ".a%d { color: #123456; }\n" % number * 80)
    return path


def provision(runs):
    site = os.path.join(REPO, "playbooks", "site.yml")
    ping = os.path.join(HERE, "ping.yml")
    out = {"fresh_1_host": [], "fresh_5_hosts": []}
    # The two fresh converges of a round run one after the other on hosts
    # just made: the machine's speed drifts over minutes, so each round's
    # ratio is taken between converges that ran within two minutes.
    for attempt in range(runs):
        if attempt:
            log("new test hosts for round %d" % (attempt + 1))
            new_hosts()
        log("fresh converge, 1 host (single-host layout), round %d" % (attempt + 1))
        out["fresh_1_host"].append(playbook(site, SINGLE, timing=True))
        log("fresh converge, 5 hosts (2 front-ends, 3 app servers), round %d" % (attempt + 1))
        out["fresh_5_hosts"].append(playbook(site, "farm", timing=True))
    out["noop_site"], out["one_task"] = [], []
    for attempt in range(runs):  # interleaved, like the load runs
        log("no-op re-run of site.yml and the one-task playbook, run %d" % (attempt + 1))
        out["noop_site"].append(playbook(site, "farm"))
        out["one_task"].append(playbook(ping, "farm"))
    log("the same over the podman connection (no pipelining), once")
    out["noop_site_podman"] = playbook(site, "farm", env=OVER_PODMAN)
    out["one_task_podman"] = playbook(ping, "farm", env=OVER_PODMAN)
    # Last: the farm then runs this release (the same routes).
    log("a release with %d more modules and %d more static files, to the farm" % (MORE_FILES, MORE_FILES))
    source = larger_release()
    try:
        out["larger_release"] = playbook(site, "farm", timing=True, extra=["-e", "webpy_app_source_dir=" + source])
    finally:
        shutil.rmtree(os.path.dirname(source))
    return out


# --- comparison servers -----------------------------------------------------

def write_file(host, path, text):
    pexec(host, "sh", "-c", 'cat > "$1"', "-", path, input_text=text)


def transient(host, unit, argv, props=()):
    """Start a command as a transient systemd service (it dies with the host)."""
    # flup workers may ignore SIGTERM; do not wait out systemd's stop timeout.
    pexec(host, "systemctl", "kill", "--signal=SIGKILL", unit, check=False)
    pexec(host, "systemctl", "stop", unit, check=False)
    pexec(host, "systemctl", "reset-failed", unit, check=False)
    # Inside the test hosts a stopped unit can wait out its stop timeout for
    # an empty cgroup; a short one keeps a --reuse run from waiting 90 s a unit.
    args = ["systemd-run", "--unit", unit, "--collect", "-p", "TimeoutStopSec=5"]
    for prop in props:
        args += ["-p", prop]
    pexec(host, *(args + list(argv)))


def edit(conf, pattern, replacement, count=0, flags=0):
    """re.sub that stops the run when the pattern matches nothing: a variant
    the roles' configuration has outgrown must not pass as measured."""
    conf, found = re.subn(pattern, replacement, conf, count=count, flags=flags)
    if not found:
        raise SystemExit("bench: nothing in lighttpd.conf matches %r" % pattern)
    return conf


def lighttpd_variant(host, tag, port, max_procs=None, backends=None,
                     before_static=False, no_headers=False, flup=False, same_priority=False,
                     bare=False, other_policy=False, self_rewrite=False, thunder_lock=False):
    """Run a second lighttpd from the collection's own lighttpd.conf, changing
    only the port and the process count or the list of app servers."""
    conf = pexec(host, "cat", "/etc/lighttpd/lighttpd.conf")
    conf = edit(conf, r'server\.systemd-socket-activation = "enable"\n', "")
    conf = edit(conf, r"server\.port\s*=\s*80\n", "server.port = %d\n" % port)
    conf = conf.replace('"[::]:80"', '"[::]:%d"' % port)  # only on hosts with IPv6
    conf = edit(conf, r'"/run/lighttpd\.pid"', '"/run/lighttpd-%s.pid"' % tag)
    if max_procs is not None:
        conf = edit(conf, r'"max-procs"\s*=> \d+', '"max-procs" => %d' % max_procs)
        conf = edit(conf, r"/app\.sock", "/%s.sock" % tag)
    if backends is not None:
        conf = edit(conf, r'\n\s*"(lightweb-bench-app\d)" => \(.*?\n\s*\),',
                    lambda m: m.group(0) if m.group(1) in backends else "", flags=re.S)
    if before_static:  # /sta as configured before: logged, no Cache-Control, no compression
        conf = edit(conf, r'\n\$HTTP\["url"\] =\^ "/sta/" \{.*?\n\}\n', "\n", count=1, flags=re.S)
    if no_headers:
        conf = edit(conf, r"\nsetenv\.set-response-header = \(.*?\n\)\n", "\n", count=1, flags=re.S)
    if same_priority:  # the app at lighttpd's priority and policy, as before webpy_app_nice
        conf = edit(conf, r'"bin-path"(\s*)=> "/usr/bin/chrt --batch 0 /usr/bin/nice -n \d+ ', r'"bin-path"\1=> "')
    if other_policy:  # nice 5 without SCHED_BATCH, as before webpy_app_cpu_policy
        conf = edit(conf, r'"bin-path"(\s*)=> "/usr/bin/chrt --batch 0 ', r'"bin-path"\1=> "')
    if thunder_lock:  # uWSGI serializing accept() with its process-shared lock
        conf = edit(conf, r" --threads (\d+) ", r" --threads \1 --thunder-lock ")
    if self_rewrite:  # /sta rewritten to itself, as before the blank rewrite target
        conf = edit(conf, r'\n  "\^/sta/" => "",\n', '\n  "^/sta/(.*)$" => "/sta/$1",\n')
    if bare:  # only what serving files needs (still no access log): what the rest costs /sta
        for block in (r'url\.rewrite-once = \(.*?\n\)\n',  # the app's rewrite
                      r'\$HTTP\["url"\] =~ "[^"]*" \{\n.*?\n\}\n',  # deny rules, status
                      r'\n  (expire|deflate)\.[^\n]*',  # caching, compression
                      r'setenv\.set-response-header = \(.*?\n\)\n'):  # security headers
            conf = edit(conf, block, "", flags=re.S)
    if flup:  # the app under flup, the FastCGI server before uWSGI became the default
        conf = edit(conf, r'"bin-path"\s*=> "[^"]*"', '"bin-path" => "%s"' % FLUP_COMMAND)
        conf = edit(conf, r'"kill-signal"\s*=> \d+', '"kill-signal" => 15')
    start_lighttpd(host, tag, tag, conf)


def start_lighttpd(host, unit, name, conf):
    """Write /etc/lighttpd/NAME.conf, check it, and run a lighttpd on it."""
    path = "/etc/lighttpd/%s.conf" % name
    write_file(host, path, conf)
    pexec(host, "lighttpd", "-tt", "-f", path)
    transient(host, unit, ["/usr/sbin/lighttpd", "-D", "-f", path])


def stock_lighttpd():
    """Debian's own lighttpd.conf, untouched but for port and pid file,
    serving a copy of the same /sta file."""
    conf = pexec(SINGLE, "sh", "-c",
                 "f=$(ls /var/cache/apt/archives/lighttpd_*.deb 2>/dev/null | head -n1);"
                 "if [ -z \"$f\" ]; then cd /tmp && apt-get download -q lighttpd >/dev/null"
                 " && f=$(ls /tmp/lighttpd_*.deb | head -n1); fi;"
                 "dpkg-deb --fsys-tarfile \"$f\" | tar -xO ./etc/lighttpd/lighttpd.conf")
    conf = re.sub(r"server\.port\s*=\s*80\n", "server.port = 8090\n", conf)
    conf = conf.replace('"/run/lighttpd.pid"', '"/run/lighttpd-stock.pid"')
    conf = conf.replace('"/var/www/html"', '"/srv/bench-stock"')
    # The collection's log directory belongs to its own lighttpd account.
    conf = conf.replace('"/var/log/lighttpd/error.log"', '"/var/log/lighttpd-stock/error.log"')
    pexec(SINGLE, "sh", "-c", "install -d -o www-data /var/log/lighttpd-stock && mkdir -p /srv/bench-stock && "
          "cp -p /srv/lightweb/htdocs/sta/style.css /srv/bench-stock/style.css")
    start_lighttpd(SINGLE, "bench-lighttpd-stock", "stock", conf)
    if PROPOSALS:
        # The same, loading the modules the collection's front-end loads that
        # stock does not, none of them configured: what loading them costs a file.
        ours = re.search(r"\nserver\.modules = \((.*?)\n\)", pexec(SINGLE, "cat", "/etc/lighttpd/lighttpd.conf"), re.S)
        if not ours:
            raise SystemExit("bench: no server.modules list in lighttpd.conf")
        stock = set(re.findall(r'"(mod_\w+)"', conf))
        extra = [name for name in re.findall(r'"(mod_\w+)"', ours.group(1)) if name not in stock]
        conf = edit(conf, r"server\.port = 8090\n", "server.port = 8091\n")
        conf = edit(conf, r'"/run/lighttpd-stock\.pid"', '"/run/lighttpd-stock-mods.pid"')
        conf += "server.modules += ( %s )\n" % ", ".join('"%s"' % name for name in extra)
        start_lighttpd(SINGLE, "bench-lighttpd-stock-mods", "stock-mods", conf)


NGINX_SITE = """\
# nginx in front of gunicorn (sync workers), as its documentation deploys it.
server {
    listen 8080;
    location / {
        proxy_pass http://unix:/run/gunicorn/bench.sock;
        proxy_set_header Host $host;
        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
    }
}
"""


def nginx_gunicorn():
    # Debian's nginx; policy-rc.d keeps the package from starting it on :80,
    # which lighttpd holds.
    pexec(SINGLE, "sh", "-c",
          "test -x /usr/sbin/nginx || { printf '#!/bin/sh\\nexit 101\\n' > /usr/sbin/policy-rc.d"
          " && chmod 755 /usr/sbin/policy-rc.d && apt-get install -y -q --no-install-recommends nginx"
          " >/dev/null; rc=$?; rm -f /usr/sbin/policy-rc.d; exit $rc; }")
    pexec(SINGLE, "rm", "-f", "/etc/nginx/sites-enabled/default")
    write_file(SINGLE, "/etc/nginx/sites-enabled/bench", NGINX_SITE)
    transient(SINGLE, "bench-gunicorn",
              [APP_DIR + "/venv/bin/gunicorn", "--workers", str(PROCS), "--worker-class", "sync",
               "--bind", "unix:/run/gunicorn/bench.sock", "app:wsgi"],
              ["User=webpy", "Group=webpy", "RuntimeDirectory=gunicorn",
               "WorkingDirectory=" + APP_DIR])
    pexec(SINGLE, "systemctl", "restart", "nginx")


def webpy_builtin():
    transient(SINGLE, "bench-webpy", [APP_DIR + "/venv/bin/python3", "app.py", "8082"],
              ["User=webpy", "Group=webpy", "WorkingDirectory=" + APP_DIR])


def setup_comparisons():
    log("comparison servers: nginx + gunicorn, web.py's server, stock lighttpd, sweeps")
    nginx_gunicorn()
    webpy_builtin()
    stock_lighttpd()
    for count in (1, 2, 8):
        lighttpd_variant(SINGLE, "bench-p%d" % count, 8100 + count, max_procs=count)
    for count in (1, 2):
        lighttpd_variant(FE2, "bench-a%d" % count, 8200 + count, backends=APPS[:count])
    if PROPOSALS:
        # Sockets of its own (max_procs): it must not reach the uWSGI processes.
        lighttpd_variant(SINGLE, "bench-flup", 8110, max_procs=PROCS, flup=True)
        lighttpd_variant(SINGLE, "bench-sta-before", 8120, max_procs=1, before_static=True)
        lighttpd_variant(SINGLE, "bench-sta-self", 8123, max_procs=1, self_rewrite=True)
        lighttpd_variant(SINGLE, "bench-nohdr", 8121, max_procs=1, no_headers=True)
        lighttpd_variant(SINGLE, "bench-bare", 8122, max_procs=1, bare=True)
        lighttpd_variant(SINGLE, "bench-nice0", 8111, max_procs=PROCS, same_priority=True)
        lighttpd_variant(SINGLE, "bench-other", 8112, max_procs=PROCS, other_policy=True)
        lighttpd_variant(SINGLE, "bench-thunder", 8113, max_procs=PROCS, thunder_lock=True)


# --- measuring --------------------------------------------------------------

def procs(host):
    with open(os.path.join(HERE, "procstat.py"), encoding="utf-8") as handle:
        return json.loads(pexec(host, "python3", "-", input_text=handle.read()))


def select(table, kind):
    """Pick the processes of one server out of a host's process table. With
    "KIND:TAG", the lighttpd run from /etc/lighttpd/TAG.conf or the app it spawned."""
    kind, tag = kind.split(":", 1) if ":" in kind else (kind, "")
    conf = "/etc/lighttpd/%s.conf" % (tag or "lighttpd")
    main = [p["pid"] for p in table if p["comm"] == "lighttpd" and "-f " + conf in p["cmd"]]
    rules = {
        "lighttpd": lambda p: p["pid"] in main,
        # The collection's app server (uWSGI) under that lighttpd, or on an app
        # server of the farm (no lighttpd there, and no TAG asked for).
        "fcgi": lambda p: "lightweb_wsgi:application" in p["cmd"] and (p["ppid"] in main or not (main or tag)),
        "nginx": lambda p: p["comm"] == "nginx",
        "gunicorn": lambda p: "bin/gunicorn" in p["cmd"],
        "webpy": lambda p: p["cmd"].endswith("app.py 8082"),
        "flup": lambda p: "lightweb_fcgi.py" in p["cmd"],
    }
    return [p for p in table if rules[kind](p)]


# Where each layout's processes run: label -> (kind, hosts).
SERVERS = {
    "single": {"lighttpd": ("lighttpd", [SINGLE]), "app": ("fcgi", [SINGLE])},
    "farm": {"lighttpd": ("lighttpd", [FE1]), "app": ("fcgi", APPS)},
    "gunicorn": {"nginx": ("nginx", [SINGLE]), "app": ("gunicorn", [SINGLE])},
    "webpy": {"app": ("webpy", [SINGLE])},
    "flup": {"app": ("flup", [SINGLE])},
    "nice0": {"lighttpd": ("lighttpd:bench-nice0", [SINGLE]), "app": ("fcgi:bench-nice0", [SINGLE])},
    "other": {"lighttpd": ("lighttpd:bench-other", [SINGLE]), "app": ("fcgi:bench-other", [SINGLE])},
    "thunder": {"lighttpd": ("lighttpd:bench-thunder", [SINGLE]), "app": ("fcgi:bench-thunder", [SINGLE])},
    # Static files: lighttpd alone, each variant its own process.
    "sta": {"lighttpd": ("lighttpd", [SINGLE])},
    "stock": {"lighttpd": ("lighttpd:stock", [SINGLE])},
    "sta-before": {"lighttpd": ("lighttpd:bench-sta-before", [SINGLE])},
    "sta-self": {"lighttpd": ("lighttpd:bench-sta-self", [SINGLE])},
    "sta-nohdr": {"lighttpd": ("lighttpd:bench-nohdr", [SINGLE])},
    "sta-bare": {"lighttpd": ("lighttpd:bench-bare", [SINGLE])},
    "stock-mods": {"lighttpd": ("lighttpd:stock-mods", [SINGLE])},
}


def snapshot(layout):
    """CPU seconds and memory of each part of a layout, per host."""
    out = {}
    for label, (kind, names) in SERVERS.get(layout, {}).items():
        rows = []
        for host in names:
            rows += select(procs(host), kind)
        out[label] = {"cpu_s": sum(p["cpu_s"] for p in rows),
                      "rss_kb": [p["rss_kb"] for p in rows],
                      "pss_kb": [p["pss_kb"] for p in rows]}
    return out


UNIT = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def parse_wrk(text):
    def number(pattern):
        found = re.search(pattern, text)
        return float(found.group(1)) if found else 0.0
    p99 = re.search(r"^\s*99%\s+([\d.]+)(us|ms|s)\s*$", text, re.M)
    mean = re.search(r"^\s*Latency\s+([\d.]+)(us|ms|s)\s", text, re.M)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    requests = int(number(r"(\d+) requests in"))
    non_2xx = int(number(r"Non-2xx or 3xx responses:\s+(\d+)"))
    rps = number(r"Requests/sec:\s+([\d.]+)")
    return {
        # wrk counts error responses as requests: count only the good ones.
        "rps": rps * (requests - non_2xx) / requests if requests else 0.0,
        "requests": requests,
        "p99_ms": float(p99.group(1)) * UNIT[p99.group(2)] if p99 else None,
        # Like p99, as wrk gives it: corrected for coordinated omission.
        "mean_ms": float(mean.group(1)) * UNIT[mean.group(2)] if mean else None,
        "non_2xx": non_2xx,
        "socket_errors": sum(int(n) for n in errors.groups()) if errors else 0,
    }


def wrk(case, seconds, sample=False):
    """One wrk run; with sample, CPU per request and memory under load too."""
    before = snapshot(case["layout"]) if sample else None
    argv = ["wrk", "-t2", "-c%d" % case["conns"], "-d%ds" % seconds, "--latency", case["url"]]
    if "script" in case:
        argv[1:1] = ["-s", os.path.join(HERE, case["script"])]
    for header in case.get("headers", []):
        argv[1:1] = ["-H", header]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    loaded = None
    if sample:
        time.sleep(seconds / 2)
        loaded = snapshot(case["layout"])
    text, _stderr = proc.communicate(timeout=seconds + 60)
    result = parse_wrk(text)
    if sample:
        after = snapshot(case["layout"])
        result["cpu_us_per_req"] = {
            label: round((after[label]["cpu_s"] - before[label]["cpu_s"]) / max(result["requests"], 1) * 1e6, 1)
            for label in after}
        result["loaded"] = loaded
    return result


def cases(layouts):
    single, fe1, fe2 = "http://" + IP[SINGLE], "http://" + IP[FE1], "http://" + IP[FE2]
    all_cases = [
        # The hello route, 32 connections.
        {"name": "hello lighttpd+FastCGI single", "layout": "single", "url": single + "/hello"},
        {"name": "hello lighttpd+FastCGI farm", "layout": "farm", "url": fe1 + "/hello"},
        {"name": "hello nginx+gunicorn sync", "layout": "gunicorn", "url": single + ":8080/hello"},
        {"name": "hello web.py built-in server", "layout": "webpy", "url": single + ":8082/hello"},
        # The same offered load for both: the tail below saturation.
        {"name": "hello lighttpd+FastCGI single, paced", "layout": "paced", "url": single + "/hello",
         "script": "paced.lua"},
        {"name": "hello nginx+gunicorn sync, paced", "layout": "paced", "url": single + ":8080/hello",
         "script": "paced.lua"},
        # The same bytes from disk.
        {"name": "static /sta (collection config)", "layout": "sta", "url": single + "/sta/style.css"},
        {"name": "static stock lighttpd", "layout": "stock", "url": single + ":8090/style.css"},
        {"name": "static /sta gzip (collection config)", "layout": "sta", "url": single + "/sta/style.css",
         "headers": ["Accept-Encoding: gzip"]},
        # 20 ms of simulated I/O, 64 connections.
        {"name": "io single 1 proc", "layout": "io", "url": single + ":8101/io", "conns": 64},
        {"name": "io single 2 procs", "layout": "io", "url": single + ":8102/io", "conns": 64},
        {"name": "io single 4 procs", "layout": "io", "url": single + "/io", "conns": 64},
        {"name": "io single 8 procs", "layout": "io", "url": single + ":8108/io", "conns": 64},
        {"name": "io farm 1 app server", "layout": "io", "url": fe2 + ":8201/io", "conns": 64},
        {"name": "io farm 2 app servers", "layout": "io", "url": fe2 + ":8202/io", "conns": 64},
        {"name": "io farm 3 app servers", "layout": "io", "url": fe1 + "/io", "conns": 64},
        {"name": "io nginx+gunicorn sync", "layout": "io", "url": single + ":8080/io", "conns": 64},
    ]
    if PROPOSALS:
        all_cases += [
            {"name": "before: hello lighttpd+flup single", "layout": "flup", "url": single + ":8110/hello"},
            {"name": "before: io lighttpd+flup single", "layout": "io", "url": single + ":8110/io", "conns": 64},
            {"name": "before: static /sta as configured before (access log, no Cache-Control)", "layout": "sta-before",
             "url": single + ":8120/sta/style.css"},
            {"name": "before: static /sta rewritten to itself", "layout": "sta-self",
             "url": single + ":8123/sta/style.css"},
            {"name": "proposal: static /sta without security headers", "layout": "sta-nohdr",
             "url": single + ":8121/sta/style.css"},
            {"name": "static /sta without deny rules, rewrite, status, caching, headers", "layout": "sta-bare",
             "url": single + ":8122/sta/style.css"},
            {"name": "static stock lighttpd loading the collection's modules", "layout": "stock-mods",
             "url": single + ":8091/style.css"},
            {"name": "before: hello uWSGI at nice 0, SCHED_OTHER", "layout": "nice0",
             "url": single + ":8111/hello"},
            {"name": "before: hello uWSGI at nice 5, SCHED_OTHER", "layout": "other",
             "url": single + ":8112/hello"},
            {"name": "proposal: hello uWSGI with --thunder-lock", "layout": "thunder",
             "url": single + ":8113/hello"},
        ]
    # Each route's rows run one after the other, so what a row is compared
    # with ran within the same minute.
    order = {"hello": 0, "static": 1, "io": 2}
    all_cases.sort(key=lambda c: order[c["name"].split(": ")[-1].split()[0]])
    chosen = [c for c in all_cases if not layouts or any(word in c["name"] for word in layouts)]
    for case in chosen:
        case.setdefault("conns", 32)
    return chosen


def load_runs(chosen, runs, seconds):
    for case in chosen:  # every server answers, and warms up, before timing
        hosts.wait_http(case["url"])
        wrk(case, 2)
    results = {case["name"]: [] for case in chosen}
    for attempt in range(runs):
        for case in chosen:
            result = wrk(case, seconds, sample=case["layout"] in SERVERS)
            log("run %d %-34s %8.0f req/s  p99 %s ms" % (attempt + 1, case["name"], result["rps"], result["p99_ms"]))
            results[case["name"]].append(result)
    return results


def median_of(rows, key):
    values = [row[key] for row in rows if row.get(key) is not None]
    return statistics.median(values) if values else None


def summarize(chosen, results):
    out = {}
    for case in chosen:
        rows = results[case["name"]]
        entry = {"url": case["url"], "conns": case["conns"], "rps": median_of(rows, "rps"),
                 "p99_ms": median_of(rows, "p99_ms"), "mean_ms": median_of(rows, "mean_ms"),
                 "errors": sum(r["non_2xx"] + r["socket_errors"] for r in rows),
                 "runs": [{key: r[key] for key in ("rps", "p99_ms", "mean_ms", "cpu_us_per_req") if key in r} for r in rows]}
        if rows and "cpu_us_per_req" in rows[0]:
            entry["cpu_us_per_req"] = {label: statistics.median(r["cpu_us_per_req"][label] for r in rows)
                                       for label in rows[0]["cpu_us_per_req"]}
            entry["loaded"] = rows[len(rows) // 2]["loaded"]
        out[case["name"]] = entry
    return out


def floor():
    """The hello route called in-process, in the host's app virtualenv."""
    with open(os.path.join(HERE, "floor.py"), encoding="utf-8") as handle:
        script = handle.read()
    rows = [json.loads(pexec(SINGLE, "sh", "-c", "cd %s && venv/bin/python3 - /hello 20000" % APP_DIR,
                             input_text=script)) for _attempt in range(3)]
    return {key: statistics.median(r[key] for r in rows) for key in ("cpu_us", "wall_us")}


def host_versions():
    """Package versions on the single host, once provisioning and the
    comparison servers have installed them."""
    return {package: pexec(SINGLE, "dpkg-query", "-W", "-f=${Version}", package, check=False).strip()
            for package in ("lighttpd", "uwsgi-core", "nginx", "python3")}


def machine():
    def text(argv):
        return run(argv, check=False).strip()
    versions = {}
    versions["wrk"] = text(["dpkg-query", "-W", "-f=${Version}", "wrk"])
    versions["podman"] = text(["podman", "--version"])
    versions["ansible-core"] = text(["ansible", "--version"]).splitlines()[0]
    return {"nproc": text(["nproc"]), "mem": text(["free", "-g"]).splitlines()[1],
            "kernel": text(["uname", "-r"]), "debian": text(["cat", "/etc/debian_version"]),
            "cpu": re.sub(r".*:\s*", "", next((line for line in open("/proc/cpuinfo")
                                               if line.startswith("model name")), "")).strip(),
            "loadavg_start": open("/proc/loadavg").read().split()[:3], "versions": versions}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 run of 3 s per layout (a smoke test)")
    parser.add_argument("--runs", type=int, default=3, help="rounds over all layouts (median reported)")
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--reuse", action="store_true",
                        help="use running bench hosts; skip creating and provisioning them")
    parser.add_argument("--only", nargs="*", default=[], help="layouts whose name contains one of these words")
    parser.add_argument("--keep", action="store_true", help="leave the test hosts running")
    parser.add_argument("--no-load", action="store_true",
                        help="no wrk runs: provisioning, memory at rest and the in-process floor only")
    args = parser.parse_args()
    if args.quick:
        args.runs, args.duration = 1, 3
    stamp = time.strftime("%Y%m%d-%H%M%S")
    report = {"started": stamp, "machine": machine(),
              "settings": {"runs": args.runs, "duration_s": args.duration, "wrk": "-t2 --latency",
                           "procs": PROCS}}
    try:
        if not args.reuse:
            log("creating the test hosts")
            new_hosts()
            report["provisioning"] = provision(args.runs)
        setup_comparisons()
        report["machine"]["versions"].update(host_versions())
        time.sleep(2)
        report["sta_headers"] = hosts.wait_http("http://%s/sta/style.css" % IP[SINGLE])
        layouts = ("single", "gunicorn", "farm") + (("flup",) if PROPOSALS else ())
        report["memory_idle"] = {layout: snapshot(layout) for layout in layouts}
        report["floor"] = floor()
        chosen = [] if args.no_load else cases(args.only)
        report["load"] = summarize(chosen, load_runs(chosen, args.runs, args.duration))
        report["loadavg_end"] = open("/proc/loadavg").read().split()[:3]
    finally:
        if not args.keep:
            log("removing the test hosts")
            hosts.destroy()
        shutil.rmtree(SSH_CONTROL_DIRS, ignore_errors=True)
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    base = os.path.join(HERE, "results", stamp)
    with open(base + ".json", "w", encoding="utf-8") as handle:
        json.dump(report, handle, indent=1)
    import report as render  # pylint: disable=import-outside-toplevel
    with open(base + ".md", "w", encoding="utf-8") as handle:
        handle.write(render.markdown(report))
    log("wrote %s.json and %s.md" % (base, base))
    return 0


if __name__ == "__main__":
    sys.exit(main())
