"""Helpers shared by the molecule scenarios' testinfra tests.

Requests go from the controller to the test host's address over the podman
network: real HTTP through lighttpd, no proxy in between.
"""

import collections
import contextlib
import datetime
import functools
import json
import os
import re
import ssl
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

import testinfra
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

REPO = Path(__file__).resolve().parents[2]
EXAMPLE_APP = REPO / "roles" / "webpy_app" / "files" / "example"


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Tests look at redirects themselves instead of following them."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


# Test hosts use self-signed certificates; the TLS tests check them apart.
_TLS = ssl.create_default_context()
_TLS.check_hostname = False
_TLS.verify_mode = ssl.CERT_NONE

# Requests to test hosts must never go through a proxy from the environment.
_OPENER = urllib.request.build_opener(
    urllib.request.ProxyHandler({}), _NoRedirect(), urllib.request.HTTPSHandler(context=_TLS))


class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body

    @property
    def text(self):
        return self.body.decode("utf-8", "replace")

    def json(self):
        return json.loads(self.body)


def host_address(host):
    """First global IPv4 address of a test host."""
    out = host.check_output("ip -4 -o addr show scope global")
    match = re.search(r"inet (\d+\.\d+\.\d+\.\d+)/", out)
    assert match, "no IPv4 address on %s: %s" % (host.backend.get_hostname(), out)
    return match.group(1)


def http(address, path, method="GET", data=None, port=None, timeout=10, body=None, headers=None):
    """One request to "ADDRESS" (HTTP) or "https://ADDRESS"; a Response for any status code."""
    scheme, _sep, hostpart = address.rpartition("://")
    url = "%s://%s%s%s" % (scheme or "http", hostpart, ":%d" % port if port else "", path)
    if data is not None:
        body = urllib.parse.urlencode(data).encode()
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with _OPENER.open(request, timeout=timeout) as resp:
            return Response(resp.status, resp.headers, resp.read())
    except urllib.error.HTTPError as err:
        return Response(err.code, err.headers, err.read())


def assert_default_security_headers(headers, where):
    """The headers the lighttpd role sets on every response by default."""
    assert headers["X-Content-Type-Options"] == "nosniff", where
    assert headers["X-Frame-Options"] == "SAMEORIGIN", where
    assert headers["Referrer-Policy"] == "strict-origin-when-cross-origin", where
    assert "default-src 'self'" in headers["Content-Security-Policy"], where
    assert headers["Server"] == "lighttpd", where  # no version


def wait_for(address, path="/", status=200, seconds=30):
    """Poll until path answers with status; bounded in time."""
    deadline = time.monotonic() + seconds
    last = None
    while time.monotonic() < deadline:
        try:
            last = http(address, path, timeout=3)
            if last.status == status:
                return last
        except OSError as err:
            last = err
        time.sleep(0.5)
    raise AssertionError("%s%s did not answer %d within %ds (last: %r)" % (address, path, status, seconds, last))


def marker():
    return uuid.uuid4().hex


# policy: the CPU scheduling policy, as Linux numbers them.
SCHED_OTHER, SCHED_BATCH = 0, 3
FcgiProcess = collections.namedtuple("FcgiProcess", "user pid ppid server nice policy")


# Lists (user, pid, ppid, server, nice value, policy) of FastCGI server processes (the flup launcher or
# uWSGI loading the app) from /proc: test hosts need not have procps, and the
# pattern must not match the listing command.
_LIST_FCGI = r"""
import os, pwd
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        args = open("/proc/%s/cmdline" % pid, "rb").read().split(b"\0")
        status = open("/proc/%s/status" % pid).read().split("\n")
        stat = open("/proc/%s/stat" % pid).read()
    except OSError:
        continue
    flup = len(args) > 1 and args[1].endswith(b"/lightweb_fcgi.py")
    uwsgi = args[0] == b"/usr/bin/uwsgi" and b"lightweb_wsgi:application" in args
    if flup or uwsgi:
        fields = dict(line.split(":", 1) for line in status if ":" in line)
        # The nice value and the policy are fields 19 and 41 of
        # /proc/PID/stat, the 17th and 39th after the command name.
        after = stat.rsplit(")", 1)[1].split()
        print(pwd.getpwuid(int(fields["Uid"].split()[0])).pw_name, pid, fields["PPid"].strip(),
              "flup" if flup else "uwsgi", after[16], after[38])
"""


def fcgi_processes(host):
    """Every process of the app's FastCGI server."""
    procs = []
    for line in host.check_output("python3 -c %s", _LIST_FCGI).splitlines():
        user, pid, ppid, server, nice, policy = line.split()
        procs.append(FcgiProcess(user, int(pid), int(ppid), server, int(nice), int(policy)))
    return procs


def process_environ(host, pid, user):
    """The environment of a process, read as its account: root in these
    hosts lacks CAP_SYS_PTRACE."""
    return host.check_output("setpriv --reuid=%s --regid=%s --clear-groups cat /proc/%d/environ | tr '\\0' '\\n'"
                             % (user, user, pid)).splitlines()


def main_pid(host, unit):
    """The main PID systemd has for `unit` (e.g. lighttpd.service)."""
    return host.check_output("systemctl show -p MainPID --value %s" % unit)


def assert_settings_refused(result, name):
    """A run whose new app settings failed their try-out on `name`: it
    failed, named the settings and changed nothing."""
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "The app on %s failed its health check with its new settings" % name in output, output[-3000:]
    assert "webpy_app_environment" in output
    assert "changed=0" in output


def _ansible_playbook(inventory, limit, playbook, *extra_args, timeout=900):
    cmd = ["ansible-playbook", "-i", str(inventory), "--limit", limit, str(REPO / playbook), *extra_args]
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout, check=False)


def run_playbook(limit, *extra_args, playbook="site.yml"):
    """Run a playbook of this checkout against the scenario's inventory."""
    return _ansible_playbook(inventory_path(), limit, playbook, *extra_args, timeout=1800)


def file_checksum(host, path):
    return host.check_output("sha256sum %s" % path).split()[0]


def inventory_path():
    return os.environ.get("MOLECULE_INVENTORY_FILE") or os.path.join(
        os.environ["MOLECULE_EPHEMERAL_DIRECTORY"], "inventory")


@functools.lru_cache(maxsize=None)
def _hostvars():
    out = subprocess.run(["ansible-inventory", "-i", inventory_path(), "--list"],
                         capture_output=True, text=True, timeout=120, check=True).stdout
    return json.loads(out)["_meta"]["hostvars"]


def node(name):
    """A testinfra host of the scenario's inventory, by name. Where the
    inventory reaches it with podman exec, so does testinfra, directly: its
    ansible backend would start an ansible run for every command."""
    if _hostvars().get(name, {}).get("ansible_connection") in ("podman", "containers.podman.podman"):
        return testinfra.get_host("podman://%s" % name)
    return testinfra.get_host("ansible://%s" % name, ansible_inventory=inventory_path())


def exported_inventory():
    """The scenario's inventory with every variable inline, as a dict."""
    out = subprocess.run(["ansible-inventory", "-i", inventory_path(), "--list", "--yaml", "--export"],
                         capture_output=True, text=True, timeout=120, check=True).stdout
    import yaml  # pylint: disable=import-outside-toplevel
    return yaml.safe_load(out)


def run_playbook_with_inventory(inventory, limit, playbook, tmp_path, *extra_args):
    """Run a playbook of this checkout against an edited copy of the inventory."""
    import yaml  # pylint: disable=import-outside-toplevel
    path = tmp_path / "inventory.yml"
    path.write_text(yaml.safe_dump(inventory))
    return _ansible_playbook(path, limit, playbook, *extra_args)


def tcp_connects(host, address, port, timeout=3):
    """Whether `host` (a testinfra host) can open a TCP connection to address:port."""
    code = ("import socket,sys\n"
            "try:\n socket.create_connection((%r, %d), timeout=%d).close()\n"
            "except OSError as e:\n print(type(e).__name__); sys.exit(1)\n") % (address, port, timeout)
    return host.run("python3 -c %s", code).rc == 0


@contextlib.contextmanager
def under_load(*addresses, path="/api/info", settle=1.0):
    """Request `path` from every address in a loop, one thread each, while the
    block runs. Yields the list of outcomes: a status code, or the error of a
    request that got no response. Runs `settle` seconds before and after."""
    stop, results = threading.Event(), []

    def loop(address):
        while not stop.is_set():
            try:
                results.append(http(address, path, timeout=30).status)
            except OSError as err:
                results.append(repr(err))

    workers = [threading.Thread(target=loop, args=(address,)) for address in addresses]
    for worker in workers:
        worker.start()
    try:
        time.sleep(settle)
        yield results
        time.sleep(settle)
    finally:
        stop.set()
        for worker in workers:
            worker.join(timeout=60)


def serving_hosts(address, count, path="/api/info"):
    """Ask `count` times which app server answered; returns a Counter of host names."""
    seen = collections.Counter()
    for _attempt in range(count):
        resp = http(address, path)
        assert resp.status == 200, (resp.status, resp.text[:200])
        seen[resp.json()["host"]] += 1
    return seen


LOADGEN = Path(__file__).resolve().parent / "loadgen.py"


def podman(*args, check=True, timeout=120):
    return subprocess.run(["podman", *args], capture_output=True, text=True, timeout=timeout, check=check)


@contextlib.contextmanager
def new_host_like(name, like):
    """A test host never provisioned, of the image and with the added
    capabilities (an app server's nftables) of the scenario host `like`,
    for as long as the block runs."""
    image = podman("inspect", "--format", "{{.ImageName}}", like).stdout.strip()
    caps = podman("inspect", "--format", "{{range .HostConfig.CapAdd}}{{.}} {{end}}", like).stdout.split()
    podman("rm", "-f", "-t", "0", name, check=False)
    podman("run", "-d", "--runtime=runc", "--name", name, "--hostname", name, "--systemd=always",
           *("--cap-add=%s" % cap for cap in caps),
           "--ulimit", "nofile=8192:8192", "--ulimit", "nproc=4096:4096", image, "/sbin/init")
    try:
        # Until its boot is over: first-boot units (ldconfig, systemd-update-done)
        # write to /etc. Right after `podman run`, systemctl may not reach
        # systemd yet and return at once: ask again.
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            state = podman("exec", name, "systemctl", "is-system-running", "--wait", check=False, timeout=180)
            if state.stdout.strip() in ("running", "degraded"):
                break
            time.sleep(0.5)
        yield name
    finally:
        podman("rm", "-f", "-t", "0", name, check=False)


# What the roles write to, installed packages and accounts included. Not the
# journal, which systemd writes to on its own.
_WATCHED = "/etc /srv /usr /var/lib/dpkg /var/lib/apt /var/cache /var/log"


def file_tree(container):
    """Every file and directory the roles could change on a test host, each
    with its size, mode, owner and modification time: two of them differ
    when anything under them was written."""
    return podman("exec", container, "sh", "-c",
                  "find %s -xdev -path /var/log/journal -prune -o -printf '%%p %%s %%m %%u:%%g %%T@\\n' | sort"
                  % _WATCHED).stdout.splitlines()


def recap_changed(result, name):
    """The changed count of `name` in a run's PLAY RECAP; fails unless the
    run reached it without a failure."""
    recap = re.search(r"^%s\s*:\s*ok=\d+\s+changed=(\d+)\s+unreachable=0\s+failed=0" % re.escape(name),
                      result.stdout, re.MULTILINE)
    assert recap, result.stdout[-3000:] + result.stderr[-3000:]
    return int(recap.group(1))


# The roles' task files a run reaches when it finds a host in place: the
# settings checks, the release's name, the one read and compare of each
# role, the static tree's read, and the health check's skipped tasks. Any
# other is a step, reached only when a host differs from what they deploy.
_IN_PLACE_FILES = {"validate", "validate_tls", "release_id", "arrival", "static", "health"}


def steps_run(result):
    """The tasks of the roles' steps that a run reached, skipped or not."""
    tasks = re.findall(r"^TASK \[lightweb\.webpy\.\w+ : (\w+) \| ([^\]]*)\]", result.stdout, re.MULTILINE)
    return ["%s | %s" % task for task in tasks if task[0] not in _IN_PLACE_FILES]


def power_cycle(name, down=0.0, seconds=180):
    """Stop a test host's container, leave it off for `down` seconds, start
    it again, and return systemd's state once the boot has ended."""
    podman("stop", name, timeout=120)
    time.sleep(down)
    podman("start", name)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        # Just after the start, systemd may not take calls yet: ask again.
        try:
            state = podman("exec", name, "systemctl", "is-system-running", "--wait",
                           check=False, timeout=max(1.0, deadline - time.monotonic())).stdout.strip()
        except subprocess.TimeoutExpired:
            break
        if state:
            return state
        time.sleep(1)
    return "unknown"


def boot_ordering_cycles(host):
    """The ordering cycles systemd finds on the way to default.target. At
    boot it breaks each by dropping a start job: a unit caught in one may
    not start, with no failed unit to show for it."""
    result = host.run("systemd-analyze verify default.target")
    return [line for line in (result.stdout + result.stderr).splitlines() if "ordering cycle" in line]


@contextlib.contextmanager
def load_from(container, *urls, threads=4, interval=0.02, settle=3.0, label="load", max_seconds=1200):
    """Run the load generator on a test host against `urls` while the block
    runs; yields a dict that holds its summary once the block has ended (sent,
    failed, outcomes, versions seen with first/last times, failure times),
    and prints the counts. Times are seconds since `summary["started"]`, the
    generator's own start (test hosts share this machine's clock)."""
    run = marker()
    out, stop = "/tmp/load-%s.json" % run, "/tmp/load-%s.stop" % run
    podman("cp", str(LOADGEN), "%s:/tmp/loadgen.py" % container)
    url_args = [arg for url in urls for arg in ("--url", url)]
    summary = {"started": time.time()}
    podman("exec", "-d", container, "python3", "/tmp/loadgen.py", *url_args, "--threads", str(threads),
           "--interval", str(interval), "--max-seconds", str(max_seconds), "--stop-file", stop, "--out", out)
    try:
        time.sleep(settle)
        yield summary
        time.sleep(settle)
    finally:
        podman("exec", container, "touch", stop, check=False)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            result = podman("exec", container, "cat", out, check=False)
            if result.returncode == 0:
                summary.update(json.loads(result.stdout))
                break
            time.sleep(0.5)
        else:
            raise AssertionError("the load generator on %s wrote no summary" % container)
        print("%s: requests sent %d, failed %d, outcomes %s, versions %s" % (
            label, summary["sent"], summary["failed"], summary["outcomes"],
            {v: s["count"] for v, s in summary["versions"].items()}))


def self_signed_pair(name, passphrase=None):
    """A certificate for `name` and its own key (encrypted with `passphrase`
    if given), both as PEM text."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now)
            .not_valid_after(now + datetime.timedelta(days=1)).sign(key, hashes.SHA256()))
    encryption = (serialization.BestAvailableEncryption(passphrase) if passphrase
                  else serialization.NoEncryption())
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)
    return cert.public_bytes(serialization.Encoding.PEM).decode(), key_pem.decode()


def example_release(tmp_path, version, append=""):
    """A copy of the example app that reports `version` (and runs `append`
    at import, to make a broken release)."""
    import shutil  # pylint: disable=import-outside-toplevel
    source = tmp_path / ("app-v%s" % version)
    shutil.copytree(EXAMPLE_APP, source, ignore=shutil.ignore_patterns("__pycache__"))
    app = source / "app.py"
    text = app.read_text().replace('"LIGHTWEB_APP_VERSION", "1"', '"LIGHTWEB_APP_VERSION", "%s"' % version)
    app.write_text(text + append)
    return source


def release_status(host, base="/srv/webpy", unit=None):
    """What lightweb-release says about the host's releases (with `unit`,
    also whether that unit missed a restart)."""
    command = "%s/bin/lightweb-release --base %s status" % (base, base)
    return json.loads(host.check_output(command + (" --unit %s" % unit if unit else "")))


def release_venv(host, release, base="/srv/webpy"):
    """The name (hash) of the virtualenv a release runs in; in wheels mode
    also the name of the directory of its wheels."""
    return host.file("%s/releases/%s/venv" % (base, release)).linked_to.rsplit("/", 1)[1]
