"""Wall time of each play and each task of a playbook run, for the benchmark.

Enabled by bench.py only: it writes JSON to the file named by
LIGHTWEB_BENCH_TIMING when the run ends. A task's time runs from its start
to the start of the next one (what the playbook waited for it); each host's
time is when its result came in. The CPU seconds each host used over a task
come from the cgroup files bench.py names in LIGHTWEB_BENCH_CPU_FILES (the
hosts are containers on the machine that runs the playbook).
"""

import json
import os
import sys
import time

from ansible.plugins.callback import CallbackBase

# bench/hosts.py reads the cgroup files for bench.py too: one reader.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from hosts import read_cpu  # noqa: E402  pylint: disable=wrong-import-position

DOCUMENTATION = """
    name: bench_timing
    type: aggregate
    short_description: wall time per play and per task, for bench/bench.py
    description: Writes the wall time of each play and each task to the file named by LIGHTWEB_BENCH_TIMING.
    requirements: [enabled in callbacks_enabled]
"""


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "bench_timing"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self):
        super().__init__()
        self.started = time.monotonic()
        self.plays, self.tasks = [], []
        self.play = self.task = None
        self.cpu_files = json.loads(os.environ.get("LIGHTWEB_BENCH_CPU_FILES", "{}"))

    def _cpu(self):
        return {name: read_cpu(path) for name, path in self.cpu_files.items()}

    def _now(self):
        return time.monotonic() - self.started

    def _end_task(self):
        if self.task:
            self.task["seconds"] = round(self._now() - self.task["start"], 3)
            used = self._cpu()
            self.task["cpu"] = {name: round(used[name] - self.task_cpu[name], 3)
                                for name in self.task["hosts"] if name in used}
            self.tasks.append(self.task)
            self.task = None

    def _end_play(self):
        self._end_task()
        if self.play:
            self.play["seconds"] = round(self._now() - self.play["start"], 3)
            self.plays.append(self.play)
            self.play = None

    def v2_playbook_on_play_start(self, play):
        self._end_play()
        self.play = {"name": play.get_name(), "start": round(self._now(), 3)}

    def v2_playbook_on_task_start(self, task, is_conditional):
        self._end_task()
        self.task = {"name": task.get_name(), "play": self.play["name"] if self.play else "",
                     "start": round(self._now(), 3), "hosts": {}}
        self.task_cpu = self._cpu()

    def v2_playbook_on_handler_task_start(self, task):
        self.v2_playbook_on_task_start(task, False)

    def _result(self, result, status):
        if self.task is not None:
            self.task["hosts"][result._host.get_name()] = [round(self._now() - self.task["start"], 3), status]

    def v2_runner_on_ok(self, result):
        self._result(result, "changed" if result._result.get("changed") else "ok")

    def v2_runner_on_skipped(self, result):
        self._result(result, "skipped")

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._result(result, "failed")

    def v2_runner_on_unreachable(self, result):
        self._result(result, "unreachable")

    def v2_playbook_on_stats(self, stats):
        self._end_play()
        # Plays that ran no host (the layouts a --limit leaves out) say nothing.
        plays = [p for p in self.plays if any(t["play"] == p["name"] and t["hosts"] for t in self.tasks)]
        with open(os.environ["LIGHTWEB_BENCH_TIMING"], "w", encoding="utf-8") as handle:
            json.dump({"seconds": round(self._now(), 3), "plays": plays, "tasks": self.tasks}, handle)
