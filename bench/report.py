"""Render a bench/bench.py result (JSON) as markdown: the tables and the
ratios that issue #6 sets targets for. `python3 report.py RESULT.json`
prints it again."""

import json
import statistics
import sys

IDEAL_CONNS = 64
PACED = ", paced"  # suffix of the rows run with bench/paced.lua
IO_MS = 20


def fmt(value, digits=0):
    return "-" if value is None else ("%.*f" % (digits, value))


def mib(kb_list):
    return sum(kb_list) / 1024


def as_list(runs):
    """A provisioning entry as a list of runs: the no-op re-runs always were,
    fresh converges are since they run in rounds, runs over podman are one."""
    return runs if isinstance(runs, list) else [runs]


def target_row(name, measured, target, met):
    return "| %s | %s | %s | %s |" % (name, measured, target, "met" if met else "**missed**")


def ratios(report):
    load, rows = report.get("load", {}), []

    def get(name, key="rps"):
        return load.get(name, {}).get(key)

    hello, gun = "hello lighttpd+FastCGI single", "hello nginx+gunicorn sync"
    if get(hello) and get(gun):
        ratio = get(hello) / get(gun)
        p99, p99_gun = get(hello, "p99_ms"), get(gun, "p99_ms")
        paced = ""
        if get(hello + PACED, "p99_ms") and get(gun + PACED, "p99_ms"):
            paced = "; paced, at %s vs %s req/s: p99 %s vs %s ms" % (
                fmt(get(hello + PACED)), fmt(get(gun + PACED)),
                fmt(get(hello + PACED, "p99_ms"), 1), fmt(get(gun + PACED, "p99_ms"), 1))
        rows.append(target_row("hello: lighttpd+FastCGI / nginx+gunicorn, %d procs each" % report["settings"]["procs"],
                               "%.2fx req/s; p99 %s vs %s ms%s" % (ratio, fmt(p99, 1), fmt(p99_gun, 1), paced),
                               ">= 2.0x, p99 no worse", ratio >= 2.0 and p99 <= p99_gun))
    io, io_gun = "io single 4 procs", "io nginx+gunicorn sync"
    if get(io) and get(io_gun):
        ratio = get(io) / get(io_gun)
        rows.append(target_row("20 ms I/O: FastCGI / gunicorn sync, 4 procs each, 64 conns",
                               "%.1fx" % ratio, ">= 10x", ratio >= 10))
    if get(io):
        ideal = IDEAL_CONNS / (IO_MS / 1000.0)
        share = get(io) / ideal
        rows.append(target_row("20 ms I/O: single host 4 procs / ideal (%d req/s)" % ideal,
                               "%.2f" % share, ">= 0.85", share >= 0.85))
    cpu = load.get(hello, {}).get("cpu_us_per_req", {}).get("app")
    floor = report.get("floor", {}).get("cpu_us")
    if cpu and floor:
        rows.append(target_row("FastCGI server CPU per request / in-process call",
                               "%.0f / %.0f us = %.1fx" % (cpu, floor, cpu / floor), "<= 2x", cpu / floor <= 2))
    sta, stock = "static /sta (collection config)", "static stock lighttpd"
    if get(sta) and get(stock):
        headers = report.get("sta_headers", {})
        caching = [h for h in ("ETag", "Last-Modified", "Cache-Control", "Expires") if h in headers]
        ratio = get(sta) / get(stock)
        rows.append(target_row("/sta / stock lighttpd, same file", "%.2fx; caching headers: %s"
                               % (ratio, ", ".join(caching) or "none"), ">= 0.95x with caching headers",
                               ratio >= 0.95 and bool(caching)))
    prov = report.get("provisioning")
    if prov:
        noop = sorted(r["seconds"] for r in prov["noop_site"])[len(prov["noop_site"]) // 2]
        one = sorted(r["seconds"] for r in prov["one_task"])[len(prov["one_task"]) // 2]
        changed = max(r["changed"] for r in prov["noop_site"])
        rows.append(target_row("no-op re-run of site.yml / one-task playbook (5 hosts)",
                               "%.1f / %.1f s = %.1fx (changed=%d)" % (noop, one, noop / one, changed),
                               "<= 3x, zero changes", noop / one <= 3 and changed == 0))
        ones, fives = as_list(prov["fresh_1_host"]), as_list(prov["fresh_5_hosts"])
        per_round = sorted(five["seconds"] / one["seconds"] for one, five in zip(ones, fives))
        ratio = statistics.median(per_round)
        # The machine's CPU seconds of each converge, where kept: on 2 cores
        # a converge takes at least half of them.
        used = ("; machine CPU %.0f / %.0f s" % (statistics.median(r["machine_cpu"] for r in fives),
                                                 statistics.median(r["machine_cpu"] for r in ones))
                if "machine_cpu" in ones[0] else "")
        rounds = " (rounds: %s)" % " ".join("%.2fx" % r for r in per_round) if len(per_round) > 1 else ""
        rows.append(target_row("fresh converge: 5 hosts / 1 host", "%.0f / %.0f s = %.2fx%s%s"
                               % (statistics.median(r["seconds"] for r in fives),
                                  statistics.median(r["seconds"] for r in ones), ratio, rounds, used),
                               "<= 1.5x", ratio <= 1.5))
    idle = report.get("memory_idle", {})
    if idle.get("single") and idle.get("gunicorn"):
        ours = sum(mib(part["rss_kb"]) for part in idle["single"].values())
        theirs = sum(mib(part["rss_kb"]) for part in idle["gunicorn"].values())
        rows.append(target_row("idle RSS, single-host stack / nginx+gunicorn", "%.1f / %.1f MiB = %.2fx"
                               % (ours, theirs, ours / theirs), "<= 1.0x", ours <= theirs))
    return rows


def markdown(report):
    m = report["machine"]
    out = ["# lightweb.webpy benchmark, %s" % report["started"], "",
           "Machine: %s cores (%s), `free -g`: `%s`, kernel %s, Debian %s; load average at start %s, at end %s."
           % (m["nproc"], m["cpu"], " ".join(m["mem"].split()), m["kernel"], m["debian"],
              " ".join(m["loadavg_start"]), " ".join(report.get("loadavg_end", ["?"]))),
           "Versions: " + ", ".join("%s %s" % kv for kv in m["versions"].items()) + ".",
           "wrk %s, %d s per run, median of %d interleaved runs."
           % (report["settings"]["wrk"], report["settings"]["duration_s"], report["settings"]["runs"]), "",
           "## Targets", "", "| ratio | measured | target | |", "|---|---|---|---|"]
    out += ratios(report)
    out += ["", "## Load (wrk)", "",
            "| layout | conns | req/s | p99 ms | runs (req/s) | errors | app CPU us/req | front CPU us/req |",
            "|---|---|---|---|---|---|---|---|"]
    for name, row in report.get("load", {}).items():
        cpu = row.get("cpu_us_per_req", {})
        front = cpu.get("lighttpd", cpu.get("nginx"))
        out.append("| %s | %d | %s | %s | %s | %d | %s | %s |" % (
            name, row["conns"], fmt(row["rps"]), fmt(row["p99_ms"], 1),
            " ".join(fmt(r["rps"]) for r in row["runs"]), row["errors"], fmt(cpu.get("app")),
            # A static file costs lighttpd about 10 us: whole microseconds hide the differences.
            fmt(front, 0 if cpu.get("app") else 1)))
    # Every hello row at full speed, "before:" and "proposal:" rows too.
    saturated = [(name, row) for name, row in report.get("load", {}).items()
                 if name.split(": ")[-1].startswith("hello ") and not name.endswith(PACED)
                 and row.get("mean_ms") and row["rps"]]
    if saturated:
        # Each connection has one request out at a time, so the mean of the
        # latencies wrk timed is at most connections / req/s. wrk adds, for
        # every latency over twice that interval, samples at the latency less
        # each multiple of it (its correction for coordinated omission): the
        # faster a server, the shorter the interval and the more it adds.
        out += ["", "wrk's mean latency (corrected, as its p99 is) against connections / req/s, the most "
                "the mean of the latencies it timed can be: " + "; ".join(
                    "%s %.2f vs %.2f ms" % (name, row["mean_ms"], row["conns"] / row["rps"] * 1000)
                    for name, row in saturated) + "."]
    if "io single 4 procs" in report.get("load", {}):
        out += ["", "Ideal for the 20 ms route at %d connections: %d req/s." % (IDEAL_CONNS, IDEAL_CONNS * 1000 // IO_MS)]
    floor = report.get("floor")
    if floor:
        out += ["", "In-process WSGI call of /hello (the floor): %.1f us CPU, %.1f us wall per call."
                % (floor["cpu_us"], floor["wall_us"])]
    out += ["", "## Memory (RSS MiB; PSS in brackets counts shared pages once)", "",
            "| stack | part | at rest | under hello load |", "|---|---|---|---|"]
    loaded = {"single": "hello lighttpd+FastCGI single", "gunicorn": "hello nginx+gunicorn sync",
              "farm": "hello lighttpd+FastCGI farm", "flup": "before: hello lighttpd+flup single"}
    for layout, parts in report.get("memory_idle", {}).items():
        busy = report.get("load", {}).get(loaded.get(layout), {}).get("loaded", {})
        for part, idle in parts.items():
            def cell(data):
                if not data:
                    return "-"
                return "%.1f [%.1f] (%s)" % (mib(data["rss_kb"]), mib(data["pss_kb"]),
                                             " ".join("%.1f" % (kb / 1024) for kb in data["rss_kb"]))
            out.append("| %s | %s | %s | %s |" % (layout, part, cell(idle), cell(busy.get(part))))
    prov = report.get("provisioning")
    if prov:
        def cpu(rows):
            # Runs before the harness kept CPU seconds have none.
            if "machine_cpu" not in rows[0]:
                return "- | -"
            return "%s | %s" % (" ".join("%.1f" % r["controller_cpu"] for r in rows),
                                " ".join("%.1f (%.1f)" % (r["machine_cpu"], r["steal"]) for r in rows))
        out += ["", "## Provisioning (ansible-playbook wall time)", "",
                "CPU seconds: of ansible-playbook and its processes (the controller), and of the whole "
                "machine, which runs the controller and the hosts (stolen by the hypervisor in brackets).", "",
                "| run | seconds | changed | controller CPU s | machine CPU s |", "|---|---|---|---|---|"]
        for label, key in (("fresh converge, 1 host (single-host layout)", "fresh_1_host"),
                           ("fresh converge, 5 hosts (2 front-ends + 3 app servers)", "fresh_5_hosts"),
                           ("no-op re-run of site.yml, 5 hosts", "noop_site"), ("one-task playbook, 5 hosts", "one_task"),
                           ("no-op re-run of site.yml, 5 hosts, podman connection", "noop_site_podman"),
                           ("one-task playbook, 5 hosts, podman connection", "one_task_podman"),
                           ("a release with 100 more modules and 100 more static files, 5 hosts", "larger_release")):
            rows = prov.get(key)
            if rows is None:
                continue
            rows = as_list(rows)
            out.append("| %s | %s | %s | %s |" % (label, " ".join("%.1f" % r["seconds"] for r in rows),
                                                  " ".join(str(r["changed"]) for r in rows), cpu(rows)))
        plays = [(key, number, run, play) for key in ("fresh_1_host", "fresh_5_hosts")
                 for number, run in enumerate(as_list(prov[key]), 1)
                 for play in run.get("timing", {}).get("plays", [])]
        if plays:
            out += ["", "Fresh converges play by play (wall seconds; the plays run one after the other):", "",
                    "| run | round | play | hosts | seconds | hosts' CPU s |", "|---|---|---|---|---|---|"]
            for key, number, run, play in plays:
                names = sorted({host for task in run["timing"]["tasks"] if task["play"] == play["name"]
                                for host in task["hosts"]})
                used = run.get("hosts_cpu", {})
                out.append("| %s | %d | %s | %d | %.1f | %s |" % (
                    key.replace("_", " "), number, play["name"], len(names), play["seconds"],
                    " ".join("%.1f" % used[name] for name in names if name in used) or "-"))
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    with open(sys.argv[1], encoding="utf-8") as handle:
        sys.stdout.write(markdown(json.load(handle)))
