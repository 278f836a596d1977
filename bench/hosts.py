"""The benchmark's test hosts: podman containers with systemd, and a shell into them."""

import subprocess
import time

NETWORK = "lightweb-bench"
# Not 10.89.42.0/24: the cluster scenario uses that one.
SUBNET = "10.89.77.0/24"
IMAGE = "localhost/lightweb-test:debian12"
HOSTS = {
    "lightweb-bench-single": "10.89.77.10",
    "lightweb-bench-fe1": "10.89.77.11",
    "lightweb-bench-fe2": "10.89.77.12",
    "lightweb-bench-app1": "10.89.77.21",
    "lightweb-bench-app2": "10.89.77.22",
    "lightweb-bench-app3": "10.89.77.23",
}
# App servers load an nftables filter, and Debian's systemd sandboxes the
# app's service: the same capabilities as the cluster scenario.
APP_CAPS = ["NET_ADMIN", "SYS_ADMIN"]


def run(argv, input_text=None, check=True, timeout=600):
    """Run a command, return its stdout; fail loudly with its stderr."""
    # Without input, stdin is /dev/null: `podman exec -i` would wait on ours.
    stdin = subprocess.DEVNULL if input_text is None else None
    proc = subprocess.run(argv, input=input_text, stdin=stdin, capture_output=True, text=True,
                          timeout=timeout, check=False)
    if check and proc.returncode != 0:
        raise RuntimeError("%s failed (%d): %s" % (" ".join(argv), proc.returncode,
                                                   proc.stderr.strip()[-2000:]))
    return proc.stdout


def pexec(host, *argv, input_text=None, check=True, timeout=600):
    """Run a command inside a test host."""
    return run(["podman", "exec", "-i", host] + list(argv), input_text=input_text,
               check=check, timeout=timeout)


def cpu_files():
    """The file in each running test host's cgroup that counts its CPU time:
    cpuacct.usage (cgroup v1, nanoseconds) or cpu.stat (v2, usage_usec on
    its first line). Hosts not running are left out."""
    out = {}
    for name in HOSTS:
        pid = subprocess.run(["podman", "inspect", "-f", "{{.State.Pid}}", name], capture_output=True,
                             text=True, check=False).stdout.strip()
        if not pid or pid == "0":
            continue
        with open("/proc/%s/cgroup" % pid, encoding="ascii") as handle:
            groups = dict(line.rstrip("\n").split(":", 2)[1:] for line in handle)
        for controller in ("cpuacct", "cpu,cpuacct"):
            if controller in groups:
                out[name] = "/sys/fs/cgroup/%s%s/cpuacct.usage" % (controller, groups[controller])
                break
        else:
            out[name] = "/sys/fs/cgroup%s/cpu.stat" % groups[""]
    return out


def read_cpu(path):
    """CPU seconds from a file of cpu_files()."""
    with open(path, encoding="ascii") as handle:
        first = handle.readline().split()
    return int(first[-1]) / (1e6 if path.endswith("cpu.stat") else 1e9)


def create():
    if subprocess.run(["podman", "network", "exists", NETWORK], check=False).returncode:
        run(["podman", "network", "create", "--subnet", SUBNET, NETWORK])
    for name, address in HOSTS.items():
        # SYS_PTRACE lets root read other users' /proc/PID/smaps_rollup (PSS).
        caps = ["--cap-add", "SYS_PTRACE"]
        if "-app" in name:
            caps += [arg for cap in APP_CAPS for arg in ("--cap-add", cap)]
        # The sandbox lacks CAP_SYS_RESOURCE (explicit ulimits) and its
        # hybrid cgroups need runc (see ENVIRONMENT.md of the test machines).
        run(["podman", "--runtime=runc", "run", "-d", "--name", name, "--hostname", name,
             "--network", NETWORK, "--ip", address, "--systemd=always",
             "--ulimit", "nofile=8192:8192", "--ulimit", "nproc=4096:4096",
             "--label", "owner=lightweb-bench"] + caps + [IMAGE, "/sbin/init"])
    for name in HOSTS:
        state = pexec(name, "systemctl", "is-system-running", "--wait", check=False).strip()
        if state not in ("running", "degraded"):
            raise RuntimeError("%s did not boot: %s" % (name, state))


def enable_ssh(public_key):
    """Let Ansible in over SSH, as on any server: root logs in with the
    bench's key, and Ansible's pipelining (ansible.cfg) applies, which the
    podman connection does not support. Package lists are dropped again, so
    a fresh converge starts from the image's state (no lists, no cache)."""
    script = ("apt-get update -qq && apt-get install -y -qq --no-install-recommends openssh-server >/dev/null"
              " && install -d -m 700 /root/.ssh && cat > /root/.ssh/authorized_keys"
              " && apt-get clean && rm -rf /var/lib/apt/lists/* && systemctl enable --now ssh >/dev/null 2>&1")
    procs = {name: subprocess.Popen(["podman", "exec", "-i", name, "sh", "-c", script], stdin=subprocess.PIPE,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for name in HOSTS}
    for name, proc in procs.items():
        _out, err = proc.communicate(public_key, timeout=600)
        if proc.returncode:
            raise RuntimeError("enabling ssh on %s failed: %s" % (name, err.strip()[-2000:]))


def destroy():
    for name in HOSTS:
        run(["podman", "rm", "-f", "-t", "2", name], check=False)
    run(["podman", "network", "rm", "-f", NETWORK], check=False)


def wait_http(url, timeout=60):
    """Wait until url answers 200 (a server just started)."""
    import urllib.request  # pylint: disable=import-outside-toplevel
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return dict(response.headers)
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError("no 200 from %s within %ds" % (url, timeout))
        time.sleep(0.5)
