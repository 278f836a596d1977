"""Print every process of this host as JSON: memory and CPU time.

Run inside a test host (`podman exec -i HOST python3 - < procstat.py`):
the images have no procps, so this reads /proc directly.
"""

import json
import os

TICKS = os.sysconf("SC_CLK_TCK")


def field_kb(text, name):
    for line in text.splitlines():
        if line.startswith(name + ":"):
            return int(line.split()[1])
    return 0


procs = []
for entry in os.listdir("/proc"):
    if not entry.isdigit():
        continue
    try:
        with open("/proc/%s/stat" % entry) as handle:
            stat = handle.read()
        with open("/proc/%s/status" % entry) as handle:
            status = handle.read()
        with open("/proc/%s/cmdline" % entry, "rb") as handle:
            cmd = handle.read().replace(b"\0", b" ").decode(errors="replace").strip()
        try:
            with open("/proc/%s/smaps_rollup" % entry) as handle:
                pss = field_kb(handle.read(), "Pss")
        except OSError:
            pss = 0
    except OSError:  # the process ended while we read it
        continue
    # comm may hold spaces: the fields after it start past the last ")".
    rest = stat[stat.rindex(")") + 2:].split()
    procs.append({
        "pid": int(entry),
        "ppid": int(rest[1]),
        "comm": stat[stat.index("(") + 1:stat.rindex(")")],
        "cmd": cmd,
        "rss_kb": field_kb(status, "VmRSS"),
        "pss_kb": pss,
        "cpu_s": (int(rest[11]) + int(rest[12])) / TICKS,
    })
print(json.dumps(procs))
