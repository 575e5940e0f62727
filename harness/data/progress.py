"""Progress of a long generation: bytes and frames written, rate and time left, per file and in
total, from the files the workers write.

A video worker keeps a small progress file beside the video it writes (``.cam000.progress.json``):
bytes and frames written so far, and how many bytes are durably on disk (the point a resumed
generation continues from). The parent process reads those files while the workers run, so that
progress moves with the bytes rather than once per finished video.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from harness.data.sizing import human_bytes
from harness.errors import HarnessError
from harness.files import atomic_write, read_json, write_json_atomic
from harness.progress import StatusLine


def progress_path(output: Path) -> Path:
    """The progress file of the output file ``output`` (hidden, beside it)."""
    return output.with_name(f".{output.stem}.progress.json")


def read_progress(output: Path) -> dict[str, Any]:
    """What a worker last recorded for ``output``; empty when nothing (or nothing readable)."""
    try:
        return read_json(progress_path(output)) or {}
    except HarnessError:  # caught mid-replace on a filesystem without atomic rename: next poll
        return {}


class ProgressFile:
    """The worker's side: records bytes and frames written at most every ``interval_s``."""

    def __init__(self, output: Path, total_frames: int, interval_s: float = 2.0) -> None:
        self.path = progress_path(output)
        self.total_frames = total_frames
        self.interval_s = interval_s
        self._last = time.monotonic()
        self._durable = 0

    def due(self) -> bool:
        return time.monotonic() - self._last >= self.interval_s

    def stage(self, name: str) -> None:
        """Say what the worker does before it writes (e.g. encoding its pool)."""
        with atomic_write(self.path) as handle:
            handle.write(json.dumps({"stage": name, "total_frames": self.total_frames}).encode())

    def record(self, written: int, frames: int, durable: int | None = None) -> None:
        """Bytes and frames written; ``durable``: the synced length a resume may start from
        (kept from the last call that gave one). Only durable points are themselves synced:
        a sync of this small file can make the filesystem flush the big one's data too."""
        self._last = time.monotonic()
        if durable is not None:
            self._durable = durable
        document: dict[str, Any] = {
            "bytes": written,
            "frames": frames,
            "total_frames": self.total_frames,
            "durable_bytes": self._durable,
        }
        if durable is not None:
            write_json_atomic(self.path, document)
        else:
            with atomic_write(self.path) as handle:
                handle.write(json.dumps(document).encode())

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"
    if seconds >= 60:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds} s"


class GenerationProgress:
    """The parent's side: totals over finished and running files, shown as a status line
    (rewritten on a terminal at every poll, a whole line every ``line_every_s`` in logs)."""

    def __init__(
        self,
        description: str,
        total_bytes: int,
        total_frames: int | None,
        running: Callable[[], list[tuple[str, dict[str, Any]]]],
        finished: Callable[[int], tuple[int, int]],
        *,
        line_every_s: float = 30.0,
        stream: TextIO | None = None,
    ) -> None:
        """``running()`` gives (name, progress record) of files being written; ``finished(n)``
        gives (bytes, frames) of the first ``n`` finished jobs' files."""
        self.description = description
        self.total_bytes, self.total_frames = max(1, total_bytes), total_frames
        self._running, self._finished = running, finished
        self._status = StatusLine(
            every_s=0.0, log_every_s=line_every_s, first_at_once=False, stream=stream
        )
        self._started = time.monotonic()
        self.bytes = self.frames = 0

    def poll(self, done: int) -> str:
        written, frames = self._finished(done)
        parts = []
        for name, record in self._running():
            written += int(record.get("bytes", 0))
            frames += int(record.get("frames", 0))
            total = record.get("total_frames") or 0
            if "stage" in record:
                parts.append(f"{name} {record['stage']}")
            elif total:
                parts.append(f"{name} {100 * int(record.get('frames', 0)) // total} %")
        self.bytes, self.frames = written, frames
        line = self.line(parts)
        self._status.update(line)
        return line

    def line(self, files: list[str]) -> str:
        elapsed = max(1e-6, time.monotonic() - self._started)
        rate = self.bytes / elapsed
        left = max(0, self.total_bytes - self.bytes) / rate if rate > 0 else float("inf")
        text = (
            f"{self.description}: {human_bytes(self.bytes)} of ~{human_bytes(self.total_bytes)} "
            f"({100 * self.bytes / self.total_bytes:.0f} %)"
        )
        if self.total_frames:
            text += f", {self.frames:,} of {self.total_frames:,} frames"
        text += f", {rate / 1e6:.0f} MB/s"
        text += f", ~{_duration(left)} left" if left != float("inf") else ""
        if files:
            text += "; " + ", ".join(files[:6]) + (" ..." if len(files) > 6 else "")
        return text

    def close(self) -> None:
        self._status.close()
