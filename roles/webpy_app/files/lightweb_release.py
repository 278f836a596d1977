#!/usr/bin/python3
"""Release bookkeeping of a lightweb.webpy app: the release layout's one writer.

    BASE/releases/ID/          the code of one release, with venv -> ../../venvs/HASH
    BASE/venvs/HASH/           a virtualenv, shared by releases with the same requirements
    BASE/current -> releases/ID   what the app runs; switched atomically (rename)
    BASE/release-history       activated releases, oldest first

Commands print one JSON object. `digest` runs on the controller and names a
release after the content of its source tree, so every host and every batch
of a run agrees on it and an unchanged app is the same release. `manifest`
also runs there: it lists what a copy of a tree puts on a host.
"""

import argparse
import grp
import hashlib
import json
import os
import pwd
import re
import shutil
import subprocess
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


def manifest(source):
    """The directories, and [path, SHA-1] of every file, under source and
    relative to it: what a recursive copy of source puts on a host."""
    dirs, files = [], []
    for root, subdirs, names in os.walk(source):
        subdirs.sort()
        for name in subdirs:
            dirs.append(os.path.relpath(os.path.join(root, name), source).replace(os.sep, "/"))
        for name in sorted(names):
            path = os.path.join(root, name)
            with open(path, "rb") as handle:
                files.append([os.path.relpath(path, source).replace(os.sep, "/"),
                              hashlib.sha1(handle.read()).hexdigest()])
    return {"dirs": sorted(dirs), "files": sorted(files)}


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
        removed, removed_venvs = self._beyond(keep)
        for release in removed:
            shutil.rmtree(os.path.join(self.releases, release))
        for venv in removed_venvs:
            shutil.rmtree(os.path.join(self.venvs, venv))
        return {"changed": bool(removed or removed_venvs), "removed": removed, "removed_venvs": removed_venvs}

    def _beyond(self, keep):
        """The releases and virtualenvs prune(keep) removes."""
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
        used = set()
        for release in kept:
            try:
                used.add(os.path.basename(os.readlink(os.path.join(self.releases, release, "venv"))))
            except OSError:
                pass
        removed_venvs = []
        if os.path.isdir(self.venvs):
            removed_venvs = [venv for venv in sorted(os.listdir(self.venvs)) if venv not in used]
        return removed, removed_venvs

    def status(self, keep=None):
        result = {"changed": False, "current": self.current(), "previous": self.previous(),
                  "releases": self.listed(), "history": self.history()}
        if keep is not None:
            result["prunable"] = any(self._beyond(keep))
        return result

    def inspect(self, release, python, requirements):
        """All a run checks before it prepares a release, in one call: the
        release directory ("OWNER:GROUP MODE", "" when missing), whether its
        code was copied whole, the Python version, the SHA-256 of its
        requirements file ("" when missing), where its venv link points, and
        which virtualenvs are complete."""
        path = os.path.join(self.releases, release)
        try:
            found = os.stat(path)
            directory = "%s:%s %o" % (pwd.getpwuid(found.st_uid).pw_name, grp.getgrgid(found.st_gid).gr_name,
                                      found.st_mode & 0o7777)
        except (FileNotFoundError, KeyError):
            directory = ""
        try:
            with open(os.path.join(path, requirements), "rb") as handle:
                requirements_sha256 = hashlib.sha256(handle.read()).hexdigest()
        except (FileNotFoundError, NotADirectoryError):
            requirements_sha256 = ""
        try:
            venv = os.readlink(os.path.join(path, "venv"))
        except OSError:
            venv = ""
        try:
            venvs = sorted(name for name in os.listdir(self.venvs)
                           if os.path.exists(os.path.join(self.venvs, name, ".lightweb-complete")))
        except FileNotFoundError:
            venvs = []
        if os.path.realpath(python) == os.path.realpath(sys.executable):
            version = "%d.%d" % sys.version_info[:2]  # this interpreter: no second one to start
        else:
            version = subprocess.run([python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                                     check=True, stdout=subprocess.PIPE, text=True).stdout.strip()
        return {"changed": False, "release": release, "directory": directory,
                "complete": os.path.exists(os.path.join(path, ".lightweb-release")),
                "python": version, "requirements_sha256": requirements_sha256, "venv": venv,
                "complete_venvs": venvs}


def release_id(value):
    if not RELEASE_ID.match(value):
        raise argparse.ArgumentTypeError("release ids are letters, digits, '.', '_' or '-': %r" % value)
    return value


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", help="the app's base directory (webpy_app_base_dir)")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("digest", help="content digest of an app source tree").add_argument("source")
    commands.add_parser("manifest", help="directories and file checksums of a tree").add_argument("source")
    status = commands.add_parser("status", help="current, previous and every release on disk")
    status.add_argument("--keep", type=int, help="also say whether prune --keep KEEP would remove anything")
    inspect = commands.add_parser("inspect", help="what a run checks before it prepares a release")
    inspect.add_argument("release", type=release_id)
    inspect.add_argument("--python", required=True, help="the interpreter the virtualenvs are built with")
    inspect.add_argument("--requirements", required=True, help="the requirements file, relative to the release")
    commands.add_parser("switch", help="make a release current").add_argument("release", type=release_id)
    commands.add_parser("prune", help="remove old releases").add_argument("--keep", type=int, required=True)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.command == "digest":
        result = {"digest": digest(args.source)}
    elif args.command == "manifest":
        result = manifest(args.source)
    else:
        if not args.base:
            raise SystemExit("--base is required for %s" % args.command)
        layout = Layout(args.base)
        if getattr(args, "keep", None) is not None and args.keep < 1:
            raise SystemExit("--keep must be at least 1")
        if args.command == "status":
            result = layout.status(args.keep)
        elif args.command == "inspect":
            result = layout.inspect(args.release, args.python, args.requirements)
        elif args.command == "switch":
            result = layout.switch(args.release)
        else:
            result = layout.prune(args.keep)
    json.dump(result, sys.stdout, sort_keys=True)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
