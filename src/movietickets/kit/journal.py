"""A durable, append-only journal of JSON entries on local disk.

For what must outlive both an unreachable database and the death of the process: an entry
is on disk (fsync'd) when `append` returns, and stays there until a replay has handed it to
a handler that did not raise.

Layout: one directory, which any number of processes of the host may share (the workers of
one server, a restarted server). Each process appends to a file of its own,
`active-<pid>-<random>.jsonl`, holding an exclusive `flock` on it for as long as it lives;
the kernel drops the lock when the process dies, even by SIGKILL. An entry is one JSON line,
written with one `write()` under the process's lock and fsync'd; a new file's directory
entry is fsync'd too.

A replay (`Journal.replay`, safe in every process at once) first seals files: the process's
own active file, and the active file of any dead process (one it can lock), are renamed
`sealed-<time>-<random>.jsonl`; the next entry starts a new active file. Then each sealed
file is replayed under its lock, oldest seal first, entry by entry in the order written: the
file is deleted once every entry is handled, or else rewritten with the entries left (a new
file, fsync'd, renamed over it, keeping its name and so its place in the order). A handler
may see an entry twice (a process that dies mid-replay, or a lost race): it must make that
harmless, e.g. with the entry's own id. A last line cut short by a crash (or a write that
failed: the file is then given up) was never acknowledged to anyone: it is dropped with a
warning.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import secrets
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

Entry = dict[str, Any]
# Handles one entry; raising keeps it for the next replay.
Handler = Callable[[Entry], Awaitable[None]]

_ACTIVE = "active-"
_SEALED = "sealed-"
_SUFFIX = ".jsonl"
# A temporary file untouched for this long belongs to a process that died making it.
_STALE_SECONDS = 3600.0


@dataclass(slots=True)
class ReplayReport:
    handled: int = 0
    kept: int = 0
    # A handler raised one of `stop_on`: the rest was kept for later, untried.
    stopped: bool = False


class Journal:
    """One per process (created in the app's lifespan, closed on shutdown)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._lock = threading.Lock()  # appends and sealing, across the threads doing I/O
        self._fd: int | None = None
        self._path: Path | None = None
        self._replaying = asyncio.Lock()

    async def append(self, entry: Entry) -> None:
        """Writes `entry` durably; raises OSError when it cannot (disk full, no permission)."""
        line = (json.dumps(entry, separators=(",", ":")) + "\n").encode()
        await asyncio.to_thread(self._append, line)

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)  # releases the flock: the file is anyone's to replay
                self._fd = self._path = None

    async def replay(
        self, handle: Handler, *, stop_on: tuple[type[Exception], ...] = ()
    ) -> ReplayReport:
        """Hands every stored entry to `handle`, oldest file first; keeps those it raised on."""
        report = ReplayReport()
        async with self._replaying:
            for path in await asyncio.to_thread(self._seal_all):
                await self._replay_file(path, handle, stop_on, report)
                if report.stopped:
                    break
        return report

    # --- writing (in a worker thread) ------------------------------------------------------

    def _append(self, line: bytes) -> None:
        with self._lock:
            fd = self._fd if self._fd is not None else self._open_active()
            try:
                view = memoryview(line)
                while view:
                    written = os.write(fd, view)
                    view = view[written:]
                os.fsync(fd)
            except OSError:
                # Part of the line may be written (a full disk): the file is given up, so that
                # it ends with that torn line (dropped on replay) and the next entry starts a
                # file of its own instead of being glued to it.
                os.close(fd)
                self._fd = self._path = None
                raise

    def _open_active(self) -> int:
        self.directory.mkdir(parents=True, exist_ok=True)
        name = f"{os.getpid()}-{secrets.token_hex(6)}{_SUFFIX}"
        # Created and locked under a name replays ignore, then given its real name: a replay
        # never finds an active file that its owner has not locked yet.
        hidden = self.directory / f".new-{name}"
        fd = os.open(hidden, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            path = self.directory / f"{_ACTIVE}{name}"
            hidden.rename(path)
            _fsync_directory(self.directory)
        except BaseException:
            os.close(fd)
            with contextlib.suppress(OSError):
                hidden.unlink()
            raise
        self._fd, self._path = fd, path
        return fd

    # --- replaying -------------------------------------------------------------------------

    def _seal_all(self) -> list[Path]:
        """Seals this process's file and those of dead processes; every sealed file, oldest
        first."""
        if not self.directory.is_dir():
            return []
        with self._lock:
            fd, path = self._fd, self._path
            if fd is not None and path is not None and os.fstat(fd).st_size > 0:
                path.rename(self._sealed_name())
                os.close(fd)
                self._fd = self._path = None
                _fsync_directory(self.directory)
        for path in self.directory.glob(f"{_ACTIVE}*{_SUFFIX}"):
            self._seal_if_abandoned(path)
        self._remove_stale_temporaries()
        # By the time of sealing, in the name: a file rewritten with entries left keeps it.
        return sorted(self.directory.glob(f"{_SEALED}*{_SUFFIX}"))

    def _seal_if_abandoned(self, path: Path) -> None:
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            return
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return  # its process is alive and writing to it
            with contextlib.suppress(FileNotFoundError):
                if _same_file(fd, path):
                    path.rename(self._sealed_name())
                    _fsync_directory(self.directory)
        finally:
            os.close(fd)

    def _remove_stale_temporaries(self) -> None:
        """Files a process died with half made: a new file before its first entry, a rewrite
        not renamed yet (its original is still there, and is replayed)."""
        stale_before = time.time() - _STALE_SECONDS
        for path in self.directory.glob(".*-*"):
            with contextlib.suppress(FileNotFoundError):
                if path.stat().st_mtime < stale_before:
                    path.unlink()

    def _sealed_name(self) -> Path:
        return self.directory / f"{_SEALED}{time.time_ns():020d}-{secrets.token_hex(4)}{_SUFFIX}"

    async def _replay_file(
        self,
        path: Path,
        handle: Handler,
        stop_on: tuple[type[Exception], ...],
        report: ReplayReport,
    ) -> None:
        opened = await asyncio.to_thread(_lock_and_read, path)
        if opened is None:
            return  # another process is replaying it, or has finished it
        fd, entries = opened
        try:
            left: list[Entry] = []
            for entry in entries:
                if report.stopped:
                    left.append(entry)
                    continue
                try:
                    await handle(entry)
                except stop_on as exc:
                    logger.warning("journal: replay paused: %s", exc)
                    report.stopped = True
                    left.append(entry)
                except Exception:
                    logger.exception("journal: entry %s could not be replayed; kept", entry)
                    left.append(entry)
                else:
                    report.handled += 1
            report.kept += len(left)
            await asyncio.to_thread(self._finish, path, left)
        finally:
            os.close(fd)

    def _finish(self, path: Path, left: list[Entry]) -> None:
        if not left:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            _fsync_directory(self.directory)
            return
        temporary = self.directory / f".rewrite-{secrets.token_hex(8)}"
        data = b"".join((json.dumps(e, separators=(",", ":")) + "\n").encode() for e in left)
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        temporary.replace(path)
        _fsync_directory(self.directory)


def _lock_and_read(path: Path) -> tuple[int, list[Entry]] | None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        if not _same_file(fd, path):  # replaced or deleted since we opened it
            os.close(fd)
            return None
        with os.fdopen(os.dup(fd), "rb") as file:
            data = file.read()
    except (BlockingIOError, FileNotFoundError):
        os.close(fd)
        return None
    except BaseException:
        os.close(fd)
        raise
    lines = data.split(b"\n")
    if lines[-1]:
        logger.warning("journal: %s ends with a torn entry (a crash while writing); dropped", path)
    entries = []
    for line in lines[:-1]:
        try:
            entries.append(json.loads(line))
        except ValueError:
            logger.error("journal: unreadable entry in %s dropped: %r", path, line[:200])
    return fd, entries


def _same_file(fd: int, path: Path) -> bool:
    try:
        return os.fstat(fd).st_ino == os.stat(path).st_ino
    except FileNotFoundError:
        return False


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
