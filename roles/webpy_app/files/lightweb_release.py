#!/usr/bin/python3
"""Release bookkeeping of a lightweb.webpy app: the release layout's one writer.

    BASE/releases/ID/          the code of one release, with venv -> ../../venvs/HASH
    BASE/venvs/HASH/           a virtualenv, shared by releases with the same requirements
    BASE/wheels/HASH/          the wheels it was built from (wheels mode), removed with it
    BASE/current -> releases/ID   what the app runs; switched atomically (rename)
    BASE/release-history       activated releases, oldest first

Commands print one JSON object. `digest` runs on the controller and names a
release after the content of its source tree, so every host and every batch
of a run agrees on it and an unchanged app is the same release. `manifest`
also runs there: it lists what a copy of a tree puts on a host. So does
`pack`: it makes that copy one tar archive, which a host unpacks in one
step instead of receiving the tree a file at a time; and `requirements`,
which names what a virtualenv is built from.
"""

import argparse
import fcntl
import grp
import hashlib
import json
import os
import pwd
import re
import shlex
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import time

RELEASE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
# What pip takes for a URL, not a path, in two places of a requirements file:
# a file named with -r/-c (URL: fetched, http, https and file only) and a
# requirement (PIP_URL: installed from, ftp and version control too).
URL = re.compile(r"^(http|https|file):", re.IGNORECASE)
PIP_URL = re.compile(r"^(https?|ftp|file|(git|hg|svn|bzr)(\+[a-z]+)?):", re.IGNORECASE)
# What pip takes for a distribution file, not a project name, in a requirement.
ARCHIVE = re.compile(r"\.(whl|zip|tar|tar\.gz|tgz|tar\.bz2|tbz|tar\.xz|txz|tlz|tar\.lz|tar\.lzma)$", re.IGNORECASE)
# A comment in a requirements file, as pip finds it.
COMMENT = re.compile(r"(^|\s+)#.*$")
# Files that change without the app changing (bytecode, VCS metadata).
IGNORED = re.compile(r"(^|/)(__pycache__|\.git|\.hg|\.svn)(/|$)|\.py[co]$")


# The reads of wheel_platforms, run in the interpreter the virtualenvs are
# built with when it is not this one: its version, platform and C library.
INTERPRETER_PROBE = """import os, sys, sysconfig
print("%d.%d" % sys.version_info[:2])
print(sysconfig.get_platform())
try:
    print(os.confstr("CS_GNU_LIBC_VERSION") or "")
except (AttributeError, OSError, ValueError):
    print("")
"""
# The manylinux tags of before PEP 600, by the glibc minor version they stand for.
LEGACY_MANYLINUX = {17: "manylinux2014", 12: "manylinux2010", 5: "manylinux1"}


def wheel_platforms(libc, system_platform):
    """The platform tags of the wheels an interpreter installs, preferred
    first, as pip on its host ranks them: linux_<machine> (built there),
    then manylinux for each glibc from the host's down to the oldest with
    wheels for its machine. libc is what confstr CS_GNU_LIBC_VERSION says
    ("glibc 2.36"), system_platform what sysconfig.get_platform() says
    ("linux-x86_64"). pip download on the controller takes exactly these
    tags: left to itself it picks wheels for the controller's own machine
    and C library, which may not be the host's."""
    machine = system_platform.partition("-")[2].replace("-", "_").replace(".", "_")
    found = re.match(r"^glibc 2\.([0-9]+)", libc)
    tags = ["linux_" + machine]
    if found:
        newest = int(found.group(1))
        oldest = 5 if machine in ("x86_64", "i686") else 17  # manylinux1 and 2010 were x86 only
        for minor in range(newest, oldest - 1, -1):
            tags.append("manylinux_2_%d_%s" % (minor, machine))
            if minor in LEGACY_MANYLINUX:
                tags.append("%s_%s" % (LEGACY_MANYLINUX[minor], machine))
    return tags


def interpreter(python):
    """The Python version ("3.11") of an interpreter and the platform tags
    of the wheels it installs."""
    if os.path.realpath(python) == os.path.realpath(sys.executable):
        # This interpreter: no second one to start.
        try:
            libc = os.confstr("CS_GNU_LIBC_VERSION") or ""
        except (AttributeError, OSError, ValueError):
            libc = ""
        version, system_platform = "%d.%d" % sys.version_info[:2], sysconfig.get_platform()
    else:
        version, system_platform, libc = subprocess.run(
            [python, "-c", INTERPRETER_PROBE], check=True, stdout=subprocess.PIPE, text=True).stdout.splitlines()
    return version, wheel_platforms(libc, system_platform)


def digest(source):
    """SHA-256 over the relative paths and contents of every file under source
    but for IGNORED, read as a release is packed (tree): files in linked
    directories count, as they are deployed."""
    total = hashlib.sha256()
    for relative, path, is_dir in tree(source, IGNORED):
        if not is_dir:
            total.update(relative.encode() + b"\0")
            with open(path, "rb") as handle:
                total.update(hashlib.sha256(handle.read()).digest())
    return total.hexdigest()


def tree(source, ignored=None):
    """(relative path, path, is a directory) of everything under source, parents
    first, in name order, but for what matches ignored. Linked directories are
    followed, but not into a loop."""
    for root, dirs, files in os.walk(source, followlinks=True):
        dirs.sort()
        above = set()
        parent = root
        while True:
            above.add(os.path.realpath(parent))
            if os.path.samefile(parent, source) or parent == os.path.dirname(parent):
                break
            parent = os.path.dirname(parent)
        for name in list(dirs):
            path = os.path.join(root, name)
            relative = os.path.relpath(path, source).replace(os.sep, "/")
            if os.path.realpath(path) in above or (ignored and ignored.search(relative)):
                dirs.remove(name)  # a link to a directory that holds it, or left out
                continue
            yield relative, path, True
        for name in sorted(files):
            path = os.path.join(root, name)
            relative = os.path.relpath(path, source).replace(os.sep, "/")
            if not (ignored and ignored.search(relative)):
                yield relative, path, False


def file_digest(path, algorithm):
    with open(path, "rb") as handle:
        return hashlib.new(algorithm, handle.read()).hexdigest()


def requirement_files(path):
    """[relative name, SHA-256 or "" when unreadable] of a requirements file and
    of the files it names with -r/--requirement or -c/--constraint, in the
    order pip reads them. A relative name is resolved against the directory
    of the file that names it, as pip resolves it, and given relative to
    the first file's directory; an absolute name stays as written. URLs and
    names with variables are pip's to fetch and expand where it runs: not
    followed."""
    return digests(read_requirement_files(path))


def digests(read):
    """[name, SHA-256] of each file of read_requirement_files, without its text."""
    return [[name, sha256] for name, sha256, _text in read]


def read_requirement_files(path):
    """requirement_files, with the text of each file ("" when unreadable)."""
    root = os.path.dirname(os.path.abspath(path))
    files, seen = [], set()

    def read(path, name):
        real = os.path.realpath(path)
        if real in seen:
            return  # named again, or a loop: pip reads it once per mention, the digest once
        seen.add(real)
        try:
            with open(path, "rb") as handle:
                content = handle.read()
        except OSError:  # missing, a directory, unreadable: pip will not read it either
            files.append([name, "", ""])
            return
        text = content.decode("utf-8", "replace")
        files.append([name, hashlib.sha256(content).hexdigest(), text])
        for named in named_requirement_files(text):
            if not (URL.match(named) or "${" in named):
                path_named = os.path.join(os.path.dirname(path), named)
                read(path_named, named if os.path.isabs(named)
                     else os.path.relpath(os.path.abspath(path_named), root).replace(os.sep, "/"))

    read(path, os.path.basename(path))
    return files


def requirement_lines(text):
    """The lines of a requirements file as pip reads them: a line ending in
    a backslash goes on in the next (a comment line does not), comments
    (from a "#" at the start or after a space) and blank lines left out."""
    pending = []
    for line in text.splitlines() + [""]:
        if line.endswith("\\") and not COMMENT.match(line):
            pending.append(line.strip("\\"))
            continue
        line = COMMENT.sub("", "".join(pending) + (" " + line if COMMENT.match(line) else line)).strip()
        pending = []
        if line:
            yield line


def option_words(line):
    """The words of a line's options, split as pip splits them."""
    try:
        return shlex.split(line)
    except ValueError:
        return line.split()


def named_requirement_files(text):
    """The files a requirements file names with -r/-c, in its forms pip
    accepts: "-r NAME", "-rNAME", "--requirement NAME", "--requirement=NAME"."""
    for line in requirement_lines(text):
        words = option_words(line)
        for index, word in enumerate(words):
            option, _equals, value = word.partition("=")
            if word in ("-r", "-c", "--requirement", "--constraint") and index + 1 < len(words):
                yield words[index + 1]
            elif option in ("--requirement", "--constraint") and value:
                yield value
            elif word[:2] in ("-r", "-c") and len(word) > 2 and not word.startswith("--"):
                yield word[2:]


def relative_path_requirements(text):
    """The requirements of a requirements file given as relative paths, as
    written ("./mylib", "-e .", "dist/mylib-1.0-py3-none-any.whl",
    "file:../mylib"): pip resolves those against the directory it runs in,
    not against the file. A line is read as pip reads it: the requirement
    up to the first word starting with "-", the options after it."""
    for line in requirement_lines(text):
        words = line.split(" ")
        index = next((index for index, word in enumerate(words) if word.startswith("-")), len(words))
        requirement = " ".join(words[:index])
        if requirement:
            name = requirement.split("; " if PIP_URL.match(requirement) else ";", 1)[0].strip()
            if relative_requirement(name):
                yield name
        else:
            for name in editables(option_words(" ".join(words[index:]))):
                if (name.lower().startswith("file:") or not PIP_URL.match(name)) and not local_absolute(name):
                    yield name


def relative_requirement(name):
    """Whether pip takes the requirement name (markers left out) for a
    relative path: a relative file: URL, a path, or a distribution file."""
    if local_absolute(name):
        return False
    if PIP_URL.match(name):
        return name.lower().startswith("file:")
    if "@" in name and not looks_like_path(name.split("@", 1)[0]):
        return False  # "name@URL", as PEP 508 allows
    return looks_like_path(name) or bool(ARCHIVE.search(re.sub(r"\[[^\]]+\]$", "", name)))


def editables(options):
    """What the options of a line install as editable, in each form pip
    accepts: "-e X", "--editable X", "--editable=X", "-eX"."""
    found = [options[place + 1] for place, word in enumerate(options[:-1]) if word in ("-e", "--editable")]
    found += [word[len("--editable="):] for word in options if word.startswith("--editable=")]
    found += [word[2:] for word in options if word.startswith("-e") and len(word) > 2 and word[2] != "-"]
    return [name for name in found if name]


def looks_like_path(name):
    """pip's test of a requirement written as a path: a slash in it, or a
    leading dot."""
    return "/" in name or name.startswith(".")


def local_absolute(name):
    """An absolute path ("/opt/mylib", "file:///opt/mylib", "file:/opt/mylib"),
    or one pip expands from a variable (left to it, as it may be absolute)."""
    path = name[len("file:"):] if name.lower().startswith("file:") else name
    return path.startswith(("/", "${"))


def requirements_digest(path, files=None):
    """SHA-256 of what pip reads for a requirements file (files: its
    requirement_files, when read already): that of the file itself when it
    names no other (a virtualenv's name stays as it was), otherwise one over
    the name and digest of each file it reads."""
    files = files or requirement_files(path)
    if len(files) == 1:
        return files[0][1]
    total = hashlib.sha256()
    for relative, sha256 in files:
        total.update(relative.encode() + b"\0" + sha256.encode() + b"\0")
    return total.hexdigest()


def requirements_report(path, source):
    """What a run checks of the requirements file at path before it deploys
    source: the digest a virtualenv is named after, the files it names that
    pip on the host would not find (missing, or not under source, so not
    deployed), and the requirements given as relative paths ('"PATH" in FILE'),
    which pip on the host would resolve from its own working directory and
    which would not be part of the virtualenv's name."""
    root = os.path.dirname(os.path.abspath(path))
    source = os.path.abspath(source)
    read = read_requirement_files(path)
    files = digests(read)
    return {"sha256": requirements_digest(path, files), "files": [name for name, _sha256 in files],
            "unreachable": [name for name, sha256 in files
                            if not sha256 or os.path.commonpath([source, os.path.normpath(os.path.join(root, name))]) != source],
            "relative_paths": ['"%s" in %s' % (named, name) for name, _sha256, text in read
                               for named in relative_path_requirements(text)]}


def manifest(source):
    """The directories, and [path, SHA-1] of every file, under source and
    relative to it: what a recursive copy of source puts on a host."""
    dirs, files = [], []
    for relative, path, is_dir in tree(source):
        if is_dir:
            dirs.append(relative)
        else:
            files.append([relative, file_digest(path, "sha1")])
    return {"dirs": sorted(dirs), "files": sorted(files)}


# Archives not used for this long are removed when another is made.
PACK_UNUSED_SECONDS = 86400


def pack(source, cache, only=None, code=False):
    """A tar archive of what a copy of source puts on a host: every directory
    and file under it (or the entries named in only), owned by root,
    directories 0755 and files 0644. With code, the files the digest of an
    app's code leaves out (bytecode, version control) are left out too: a
    release holds the code its id was made from, not a repository's history.
    The archive is named after its content and kept in cache, so the hosts of
    a run, and later runs, share one."""
    entries = list(tree(source, IGNORED if code else None))
    if only is not None:
        wanted = set(only)
        entries = [entry for entry in entries if entry[0] in wanted]
        missing = wanted - {entry[0] for entry in entries}
        if missing:
            raise SystemExit("not under %s: %s" % (source, ", ".join(sorted(missing))))
    name = hashlib.sha256()
    for relative, path, is_dir in entries:
        name.update(relative.encode() + b"\0" + (b"/" if is_dir else file_digest(path, "sha256").encode()) + b"\0")
    os.makedirs(cache, exist_ok=True)
    archive = os.path.join(cache, name.hexdigest()[:32] + ".tar")
    made = not os.path.exists(archive)
    if made:
        tmp = "%s.tmp.%d" % (archive, os.getpid())
        with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT, dereference=True) as tar:
            for relative, path, is_dir in entries:
                info = tar.gettarinfo(path, arcname=relative)
                info.uid = info.gid = 0
                info.uname = info.gname = "root"
                info.mode = 0o755 if is_dir else 0o644
                if is_dir:
                    tar.addfile(info)
                else:
                    with open(path, "rb") as handle:
                        tar.addfile(info, handle)
        os.replace(tmp, archive)  # hosts packing the same tree at once each write their own
    else:
        os.utime(archive)
    for other in os.listdir(cache):
        path = os.path.join(cache, other)
        if path != archive:
            remove_if_unused(path, PACK_UNUSED_SECONDS)
    return {"archive": archive, "changed": made}


def remove_if_unused(path, seconds):
    """Removes the file path if it was not modified for seconds."""
    try:
        if os.stat(path).st_mtime < time.time() - seconds:
            os.unlink(path)
    except FileNotFoundError:
        pass  # removed by a run alongside


# Wheel directories of the controller's cache not used for this long are
# removed when wheels are downloaded into another. Longer than the
# archives' day: a wheel costs a download to get back, an archive does not.
WHEELS_UNUSED_SECONDS = 30 * 86400


def locked(path, wait=True, make=False):
    """An open descriptor of the directory path, locked (flock, exclusive)
    until it is closed, or None when wait is false and another holds the
    lock. A directory removed while its lock was awaited is opened anew (made
    again with make, else FileNotFoundError): a lock is never held on a
    directory that is gone."""
    while True:
        if make:
            os.makedirs(path, exist_ok=True)
        try:
            descriptor = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            if make:
                continue
            raise
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(descriptor)
            return None
        try:
            if os.path.samestat(os.fstat(descriptor), os.stat(path)):
                return descriptor
        except FileNotFoundError:
            pass
        os.close(descriptor)
        if not make:
            raise FileNotFoundError(path)


def download(dest, pip):
    """Runs the pip download command pip with --dest=dest, one at a time per
    dest: the hosts of a run that share Python version, platform and
    requirements download into one directory, and a pip that finds a wheel
    another is still writing would take it as downloaded. A download that
    completed is noted beside dest (DEST.complete: the command, the content
    of its requirements files, the wheels it left), so the hosts after the
    first, and later runs, skip pip while those wheels are there. Then marks
    dest used and removes the directories beside it unused for
    WHEELS_UNUSED_SECONDS and not in use."""
    wanted = hashlib.sha256(json.dumps(pip).encode())
    for argument in pip:
        if argument.startswith("--requirement="):
            wanted.update(requirements_digest(argument[len("--requirement="):]).encode())
    note = dest.rstrip("/") + ".complete"
    saved = []
    descriptor = locked(dest, make=True)
    try:
        try:
            with open(note) as handle:
                done = json.load(handle)
        except (OSError, ValueError):
            done = {}
        if done.get("command") != wanted.hexdigest() or not set(done.get("wheels", [])) <= set(os.listdir(dest)):
            run = subprocess.run(pip + ["--dest=" + dest], stdout=subprocess.PIPE, universal_newlines=True, check=False)
            if run.returncode:
                sys.stdout.write(run.stdout)
                raise SystemExit(run.returncode)
            # pip names each wheel it saved (relative to its working
            # directory) or found there.
            lines = [line.strip() for line in run.stdout.splitlines()]
            saved = [os.path.basename(line.split()[-1]) for line in lines if line.startswith("Saved ")]
            wheels = sorted(saved + [os.path.basename(line.split()[-1])
                                     for line in lines if line.startswith("File was already downloaded ")])
            with open(note + ".tmp", "w") as handle:
                json.dump({"command": wanted.hexdigest(), "wheels": wheels}, handle)
            os.replace(note + ".tmp", note)
        os.utime(dest)
    finally:
        os.close(descriptor)
    return {"dest": dest, "saved": saved, "removed": remove_unused_wheels(dest), "changed": bool(saved)}


def remove_unused_wheels(dest):
    """Removes the wheel directories beside dest (and their notes) unused
    for WHEELS_UNUSED_SECONDS and not in use, and notes left without theirs
    or half written."""
    removed = []
    parent, name = os.path.split(os.path.abspath(dest))
    old = time.time() - WHEELS_UNUSED_SECONDS
    for other in sorted(os.listdir(parent)):
        path = os.path.join(parent, other)
        if other == name or os.path.islink(path):
            continue
        if other.endswith(".complete") and not os.path.isdir(path):
            if not os.path.isdir(path[:-len(".complete")]):
                remove_if_unused(path, WHEELS_UNUSED_SECONDS)
            continue
        if other.endswith(".complete.tmp") and not os.path.isdir(path):
            # A note half written by a download that died: written in a
            # moment, so one this old is no download's.
            remove_if_unused(path, WHEELS_UNUSED_SECONDS)
            continue
        if not os.path.isdir(path):
            continue
        try:
            other_descriptor = locked(path, wait=False)
        except FileNotFoundError:
            continue  # removed by a run alongside
        if other_descriptor is None:
            continue  # in use
        try:
            if os.fstat(other_descriptor).st_mtime < old:
                shutil.rmtree(path)
                try:
                    os.unlink(path + ".complete")
                except FileNotFoundError:
                    pass  # none, or removed by a run alongside as left without its directory
                removed.append(path)
        finally:
            os.close(other_descriptor)
    return removed


class Layout:
    def __init__(self, base):
        self.base = base
        self.releases = os.path.join(base, "releases")
        self.venvs = os.path.join(base, "venvs")
        self.wheels = os.path.join(base, "wheels")
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
        the previous one), the virtualenvs they use and the wheels those were
        built from; remove the rest."""
        removed, removed_venvs, removed_wheels = self._beyond(keep)
        for release in removed:
            shutil.rmtree(os.path.join(self.releases, release))
        for venv in removed_venvs:
            shutil.rmtree(os.path.join(self.venvs, venv))
        for entry in removed_wheels:
            path = os.path.join(self.wheels, entry)
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path)
            else:
                os.remove(path)
        return {"changed": bool(removed or removed_venvs or removed_wheels), "removed": removed,
                "removed_venvs": removed_venvs, "removed_wheels": removed_wheels}

    def _beyond(self, keep):
        """The releases, virtualenvs and entries of the wheels directory
        prune(keep) removes. Wheels live in a directory named after the
        virtualenv they were built for; any other entry (the flat directory
        of older versions of the role) has no virtualenv to go with."""
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
        removed_venvs, venvs = [], []
        if os.path.isdir(self.venvs):
            venvs = sorted(os.listdir(self.venvs))
            removed_venvs = [venv for venv in venvs if venv not in used]
        kept_venvs = set(venvs) - set(removed_venvs)
        removed_wheels = []
        if os.path.isdir(self.wheels):
            removed_wheels = [entry for entry in sorted(os.listdir(self.wheels)) if entry not in kept_venvs]
        return removed, removed_venvs, removed_wheels

    def status(self, keep=None, unit=None):
        result = {"changed": False, "current": self.current(), "previous": self.previous(),
                  "releases": self.listed(), "history": self.history()}
        if keep is not None:
            result["prunable"] = any(self._beyond(keep))
        if unit is not None:
            result["restart_pending"] = self.started_before_change(unit)
        return result

    def started_before_change(self, unit):
        """Whether the systemd unit that runs the app is active since before
        `current` last moved or its unit files (the app's settings) last
        changed: a run that changed them and then failed before its restart
        left the app as it was, and nothing else would differ for the next
        run (a daemon-reload by anything else, a package install, also hides
        a changed unit file from NeedDaemonReload). In whole seconds, as
        systemd gives them: the restart that follows a change may come within
        the same second."""
        try:
            shown = subprocess.run(["systemctl", "show", "--timestamp=unix", "--property=ActiveState",
                                    "--property=ActiveEnterTimestamp", "--property=FragmentPath",
                                    "--property=DropInPaths", "--", unit],
                                   stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, universal_newlines=True,
                                   check=False).stdout
            changed = [os.lstat(self.current_link).st_mtime]
        except (FileNotFoundError, NotADirectoryError):
            return False  # no systemd, or no release switched in yet
        properties = dict(line.partition("=")[::2] for line in shown.splitlines())
        for path in [properties.get("FragmentPath", "")] + properties.get("DropInPaths", "").split():
            try:
                changed.append(os.stat(path).st_mtime)
            except OSError:
                pass  # none, or removed since systemd loaded the unit
        started = properties.get("ActiveEnterTimestamp", "").lstrip("@")
        return (properties.get("ActiveState") in ("active", "reloading") and started.isdigit()
                and int(started) < int(max(changed)))

    def inspect(self, release, python, requirements):
        """All a run checks before it prepares a release, in one call: the
        release directory ("OWNER:GROUP MODE", "" when missing), whether its
        code was copied whole and the digest of that code, the Python version
        and the platform tags of its wheels, the digest of its requirements
        (requirements_digest; "" when missing), where its venv link points, and which
        virtualenvs are complete."""
        path = os.path.join(self.releases, release)
        try:
            found = os.stat(path)
            directory = "%s:%s %o" % (pwd.getpwuid(found.st_uid).pw_name, grp.getgrgid(found.st_gid).gr_name,
                                      found.st_mode & 0o7777)
        except (FileNotFoundError, KeyError):
            directory = ""
        requirements_sha256 = requirements_digest(os.path.join(path, requirements))
        try:
            venv = os.readlink(os.path.join(path, "venv"))
        except OSError:
            venv = ""
        try:
            venvs = sorted(name for name in os.listdir(self.venvs)
                           if os.path.exists(os.path.join(self.venvs, name, ".lightweb-complete")))
        except FileNotFoundError:
            venvs = []
        try:
            with open(os.path.join(path, ".lightweb-release"), encoding="utf-8") as handle:
                marker = handle.read().split()
        except (FileNotFoundError, NotADirectoryError):
            marker = None
        version, platforms = interpreter(python)
        return {"changed": False, "release": release, "directory": directory,
                "complete": marker is not None,
                # The digest of the code it was made from; markers of older
                # versions of the role hold the release id alone.
                "content_digest": marker[1] if marker and len(marker) > 1 else "",
                "python": version, "platforms": platforms,
                "requirements_sha256": requirements_sha256, "venv": venv, "complete_venvs": venvs}


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
    pack_command = commands.add_parser("pack", help="a tar archive of a tree, for a host to unpack")
    pack_command.add_argument("source")
    pack_command.add_argument("--cache", required=True, help="the directory that keeps the archives")
    pack_command.add_argument("--code", action="store_true",
                              help="an app's code: leave out bytecode and version control metadata")
    pack_command.add_argument("only", nargs="*", help="pack these entries (relative paths) alone")
    requirements_command = commands.add_parser("requirements", help="digest and files of a requirements file")
    requirements_command.add_argument("path", help="the requirements file")
    requirements_command.add_argument("--source", required=True, help="the app source it is deployed with")
    download_command = commands.add_parser("download", help="run pip download into a wheel directory, one at a time")
    download_command.add_argument("--dest", required=True, help="the wheel directory")
    download_command.add_argument("pip", nargs="+", help="the pip download command, without --dest")
    status = commands.add_parser("status", help="current, previous and every release on disk")
    status.add_argument("--keep", type=int, help="also say whether prune --keep KEEP would remove anything")
    status.add_argument("--unit", help="also say whether this systemd unit runs since before the last switch or change of its unit files")
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
    elif args.command == "pack":
        result = pack(args.source, args.cache, args.only or None, args.code)
    elif args.command == "requirements":
        result = requirements_report(args.path, args.source)
    elif args.command == "download":
        result = download(args.dest, args.pip)
    else:
        if not args.base:
            raise SystemExit("--base is required for %s" % args.command)
        layout = Layout(args.base)
        if getattr(args, "keep", None) is not None and args.keep < 1:
            raise SystemExit("--keep must be at least 1")
        if args.command == "status":
            result = layout.status(args.keep, args.unit)
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
