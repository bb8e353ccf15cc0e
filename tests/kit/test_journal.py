"""The local journal: durable appends, replays that survive processes dying, in any number."""

from __future__ import annotations

import asyncio
import errno
import json
import os
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from movietickets.kit.journal import Entry, Journal


class Collect:
    def __init__(self, failing: set[int] | None = None) -> None:
        self.seen: list[int] = []
        self.failing = failing or set()

    async def __call__(self, entry: Entry) -> None:
        if entry["n"] in self.failing:
            raise RuntimeError(f"cannot take {entry['n']}")
        self.seen.append(entry["n"])


def files(directory: Path) -> list[str]:
    return sorted(path.name for path in directory.iterdir())


def read(path: Path) -> str:
    return path.read_text()


async def test_entries_are_replayed_in_order_then_gone(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "journal")
    for n in range(5):
        await journal.append({"n": n})
    collect = Collect()
    report = await journal.replay(collect)
    assert collect.seen == [0, 1, 2, 3, 4]
    assert (report.handled, report.kept, report.stopped) == (5, 0, False)
    assert files(tmp_path / "journal") == []
    assert (await journal.replay(collect)).handled == 0
    # Appending after a replay starts a new file.
    await journal.append({"n": 5})
    assert (await journal.replay(collect)).handled == 1
    journal.close()


async def test_an_entry_that_fails_is_kept_and_the_others_go(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    for n in range(4):
        await journal.append({"n": n})
    report = await journal.replay(Collect(failing={2}))
    assert (report.handled, report.kept) == (3, 1)
    again = Collect()
    assert (await journal.replay(again)).handled == 1
    assert again.seen == [2]
    journal.close()


async def test_a_stop_keeps_the_rest_untried_in_order(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    for n in range(3):
        await journal.append({"n": n})
    await journal.replay(Collect())  # sealed and replayed
    for n in range(3, 6):
        await journal.append({"n": n})
    tried: list[int] = []

    async def database_away(entry: Entry) -> None:
        tried.append(entry["n"])
        if entry["n"] == 4:
            raise ConnectionError("database away")

    report = await journal.replay(database_away, stop_on=(ConnectionError,))
    assert report.stopped
    assert tried == [3, 4]
    await journal.append({"n": 6})  # written after the stop, replayed after what was kept
    later = Collect()
    await journal.replay(later)
    assert later.seen == [4, 5, 6]
    journal.close()


def run_writer(directory: Path, entries: int, then: str) -> subprocess.Popen[bytes]:
    """Another process appending to the journal, then dying (SIGKILL) or staying alive."""
    script = textwrap.dedent(
        f"""
        import asyncio, os, signal, sys, time
        from pathlib import Path
        from movietickets.kit.journal import Journal

        async def main():
            journal = Journal(Path({str(directory)!r}))
            for n in range({entries}):
                await journal.append({{"n": n, "pad": "x" * 1000}})
            print("written", flush=True)
            if {then!r} == "die":
                os.kill(os.getpid(), signal.SIGKILL)
            time.sleep(60)

        asyncio.run(main())
        """
    )
    process = subprocess.Popen(  # noqa: S603 (our own interpreter)
        [sys.executable, "-c", script], stdout=subprocess.PIPE
    )
    assert process.stdout is not None
    assert process.stdout.readline() == b"written\n"
    process.stdout.close()
    return process


async def test_what_a_killed_process_wrote_is_replayed_by_another(tmp_path: Path) -> None:
    writer = run_writer(tmp_path, 50, then="die")
    assert writer.wait(timeout=10) == -9
    journal = Journal(tmp_path)
    collect = Collect()
    await journal.replay(collect)
    assert collect.seen == list(range(50))
    assert files(tmp_path) == []


async def test_a_live_process_keeps_its_file_until_it_dies(tmp_path: Path) -> None:
    writer = run_writer(tmp_path, 3, then="live")
    journal = Journal(tmp_path)
    try:
        assert (await journal.replay(Collect())).handled == 0  # it may still be writing
    finally:
        writer.kill()
        writer.wait()
    collect = Collect()
    await journal.replay(collect)
    assert collect.seen == [0, 1, 2]


async def test_a_line_cut_short_by_a_crash_is_dropped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "sealed-00000000000000000001-abcd.jsonl").write_bytes(b'{"n":0}\n{"n":1}\n{"n"')
    collect = Collect()
    await Journal(tmp_path).replay(collect)
    assert collect.seen == [0, 1]
    assert "torn entry" in caplog.text
    assert files(tmp_path) == []


async def test_many_replayers_at_once_replay_everything(tmp_path: Path) -> None:
    """As every worker of every instance does: each entry at least once, files all gone."""
    writers = [Journal(tmp_path) for _ in range(3)]
    for n in range(90):
        await writers[n % 3].append({"n": n})
    for writer in writers[1:]:
        writer.close()  # these two "died"; the first is alive and replays with the others
    seen: Counter[int] = Counter()

    async def handle(entry: Entry) -> None:
        await asyncio.sleep(0)
        seen[entry["n"]] += 1

    replayers = [writers[0], *(Journal(tmp_path) for _ in range(3))]
    await asyncio.gather(*(replayer.replay(handle) for replayer in replayers))
    await writers[0].replay(handle)  # anything a lost race left
    assert set(seen) == set(range(90))
    assert files(tmp_path) == []


async def test_a_journal_that_cannot_be_written_says_so(tmp_path: Path) -> None:
    blocked = tmp_path / "not-a-directory"
    blocked.write_text("")
    with pytest.raises(OSError):  # noqa: PT011 (any OSError: the caller answers 503)
        await Journal(blocked).append({"n": 0})


async def test_entries_are_json_lines(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    await journal.append({"n": 1, "text": "ünïcode", "nested": {"a": [1, 2]}})
    journal.close()
    (name,) = files(tmp_path)
    assert name.startswith("active-")
    loaded: Any = json.loads(read(tmp_path / name))
    assert loaded == {"n": 1, "text": "ünïcode", "nested": {"a": [1, 2]}}


async def test_an_entry_that_fails_to_be_written_leaves_the_next_ones_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A full disk cuts a write short: that entry was refused to its caller and is dropped;
    the next one starts a file of its own, not glued to the torn line."""
    journal = Journal(tmp_path)
    await journal.append({"n": 0})
    real_write = os.write

    def disk_full(fd: int, data: bytes | memoryview) -> int:
        monkeypatch.setattr(os, "write", real_write)  # only this once
        real_write(fd, bytes(data)[:5])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", disk_full)
    with pytest.raises(OSError, match="No space"):
        await journal.append({"n": 1})
    await journal.append({"n": 2})
    collect = Collect()
    report = await journal.replay(collect)
    assert sorted(collect.seen) == [0, 2]
    assert (report.handled, report.kept) == (2, 0)
    journal.close()
