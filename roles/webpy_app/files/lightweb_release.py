#!/usr/bin/python3
"""Release bookkeeping of a lightweb.webpy app: the release layout's one writer.

    BASE/releases/ID/          the code of one release, with venv -> ../../venvs/HASH
    BASE/venvs/HASH/           a virtualenv, shared by releases with the same requirements
    BASE/current -> releases/ID   what the app runs; switched atomically (rename)
    BASE/release-history       activated releases, oldest first

Commands print one JSON object. `digest` runs on the controller and names a
release after the content of its source tree, so every host and every batch
of a run agrees on it and an unchanged app is the same release.
"""

import argparse
import hashlib
import json
import os
import re
import shutil
import sys

RELEASE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
# Files that change without the app changing (bytecode, VCS metadata).
IGNORED = re.compile(r"(^|/)(__pycache__|\.git|\.hg|\.svn)(/|$)|\.py[co]$")


def digest(source):
    """SHA-256 over the relative paths and contents of every file under source."""
    total = hashlib.sha256()
    for root, dirs, files in os.walk(source):
        dirs.sort()
        for name in sorted(files):
            path = os.path.join(root, name)
            relative = os.path.relpath(path, source).replace(os.sep, "/")
            if IGNORED.search(relative):
                continue
            total.update(relative.encode() + b"\0")
            with open(path, "rb") as handle:
                total.update(hashlib.sha256(handle.read()).digest())
    return total.hexdigest()


class Layout:
    def __init__(self, base):
        self.base = base
        self.releases = os.path.join(base, "releases")
        self.venvs = os.path.join(base, "venvs")
        self.current_link = os.path.join(base, "current")
        self.history_file = os.path.join(base, "release-history")

    def current(self):
        try:
            return os.path.basename(os.readlink(self.current_link))
        except OSError:
            return None

    def history(self):
        try:
            with open(self.history_file, encoding="utf-8") as handle:
                return [line.strip() for line in handle if RELEASE_ID.match(line.strip())]
        except FileNotFoundError:
            return []

    def previous(self):
        """The release active before the current one, if it is still on disk."""
        history = self.history()
        current = self.current()
        while history and history[-1] == current:
            history.pop()
        return history[-1] if history and self.exists(history[-1]) else None

    def exists(self, release):
        return bool(release) and os.path.isdir(os.path.join(self.releases, release))

    def listed(self):
        try:
            return sorted(name for name in os.listdir(self.releases) if self.exists(name))
        except FileNotFoundError:
            return []

    def _write_atomically(self, path, write):
        tmp = "%s.tmp.%d" % (path, os.getpid())
        write(tmp)
        os.replace(tmp, path)

    def _save_history(self, history):
        def write(tmp):
            with open(tmp, "w", encoding="utf-8") as handle:
                handle.write("".join(release + "\n" for release in history))
        self._write_atomically(self.history_file, write)

    def switch(self, release):
        """Point `current` at release. Going back to the release before the
        current one undoes the last switch, so repeated rollbacks walk back."""
        if not self.exists(release):
            raise SystemExit("no release %r under %s" % (release, self.releases))
        before = self.current()
        history = self.history()
        if before and (not history or history[-1] != before):
            history.append(before)  # a layout that predates the history file
        if before == release:
            return {"changed": False, "current": release, "before": before}
        if len(history) >= 2 and history[-2] == release:
            history.pop()
        else:
            history.append(release)
        self._write_atomically(self.current_link,
                               lambda tmp: os.symlink(os.path.join("releases", release), tmp))
        os.utime(os.path.join(self.releases, release))
        self._save_history(history)
        return {"changed": True, "current": release, "before": before}

    def prune(self, keep):
        """Keep the `keep` most recently active releases (always the current and
        the previous one), and the virtualenvs they use; remove the rest."""
        history = self.history()
        ranked = []
        for release in reversed(history):
            if release not in ranked and self.exists(release):
                ranked.append(release)
        others = [r for r in self.listed() if r not in ranked]
        others.sort(key=lambda r: os.stat(os.path.join(self.releases, r)).st_mtime, reverse=True)
        ranked += others
        kept = set(ranked[:keep]) | {r for r in (self.current(), self.previous()) if r}
        removed = [r for r in ranked if r not in kept]
        for release in removed:
            shutil.rmtree(os.path.join(self.releases, release))
        used = set()
        for release in kept:
            try:
                used.add(os.path.basename(os.readlink(os.path.join(self.releases, release, "venv"))))
            except OSError:
                pass
        removed_venvs = []
        if os.path.isdir(self.venvs):
            for venv in sorted(os.listdir(self.venvs)):
                if venv not in used:
                    shutil.rmtree(os.path.join(self.venvs, venv))
                    removed_venvs.append(venv)
        return {"changed": bool(removed or removed_venvs), "removed": removed, "removed_venvs": removed_venvs}

    def status(self):
        return {"changed": False, "current": self.current(), "previous": self.previous(),
                "releases": self.listed(), "history": self.history()}


def release_id(value):
    if not RELEASE_ID.match(value):
        raise argparse.ArgumentTypeError("release ids are letters, digits, '.', '_' or '-': %r" % value)
    return value


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", help="the app's base directory (webpy_app_base_dir)")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("digest", help="content digest of an app source tree").add_argument("source")
    commands.add_parser("status", help="current, previous and every release on disk")
    commands.add_parser("switch", help="make a release current").add_argument("release", type=release_id)
    commands.add_parser("prune", help="remove old releases").add_argument("--keep", type=int, required=True)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.command == "digest":
        result = {"digest": digest(args.source)}
    else:
        if not args.base:
            raise SystemExit("--base is required for %s" % args.command)
        layout = Layout(args.base)
        if args.command == "status":
            result = layout.status()
        elif args.command == "switch":
            result = layout.switch(args.release)
        else:
            if args.keep < 1:
                raise SystemExit("--keep must be at least 1")
            result = layout.prune(args.keep)
    json.dump(result, sys.stdout, sort_keys=True)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
