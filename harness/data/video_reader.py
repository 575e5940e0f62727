"""The runtime video reader: frames of a compressed video by index, for the pipelines and the
frame cache (and for checking brought videos).

``VideoReader`` is the one place that maps frame indices to timestamps, for random access (seek to
the keyframe at or before the frame, decode forward) and for sequential decoding alike. Frames of a
constant-rate video sit on its rate's grid; a variable-rate video brings the timestamps of its
frames (``timestamps``, read from its packets once, at index time). A file with several video
streams is read from its first. Frames come turned as the stream's display matrix says (phone
videos), whatever their size, odd sides included.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Sequence
from fractions import Fraction
from pathlib import Path
from typing import IO

import numpy as np

from harness.errors import HarnessError, one_line


class VideoReader:
    """Decode frames of one video by index: random access or sequential, RGB uint8 arrays.

    A random frame costs a seek to the keyframe at or before it plus decoding forward from there:
    on average half a GOP of decodes, which is what makes the study's "decoded" mode CPU heavy.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        threads: int = 1,
        file: IO[bytes] | None = None,
        timestamps: Sequence[int] | None = None,
    ) -> None:
        """``file``, when given, is the open file to read (e.g. one that counts its reads);
        ``path`` then only names it in messages. ``timestamps``: the pts of every frame in
        presentation order, for a variable-rate video."""
        import av

        self.path = Path(path)
        try:
            self._container = av.open(file if file is not None else str(path), mode="r")
        except (av.error.FFmpegError, OSError) as exc:
            raise HarnessError(f"{path}: cannot open video: {_reason(exc)}") from None
        if not self._container.streams.video:
            self._container.close()
            raise HarnessError(f"{path}: holds no video stream")
        self._stream = self._container.streams.video[0]
        # Explicit even for one thread: FFmpeg's default is one decoding thread per core, which
        # would take cores from the training loop behind the configuration's back.
        self._stream.codec_context.thread_count = threads
        if threads > 1:
            self._stream.thread_type = "AUTO"
        rate = self._stream.average_rate or self._stream.guessed_rate
        if not rate:
            self._container.close()
            raise HarnessError(f"{path}: frame rate unknown: cannot index frames")
        self.fps = Fraction(rate)
        if self._stream.time_base is None:
            self._container.close()
            raise HarnessError(f"{path}: stream has no time base: cannot index frames")
        self._time_base: Fraction = self._stream.time_base
        self._start = self._stream.start_time or 0
        self.width, self.height = self._stream.width, self._stream.height
        self.codec = self._stream.codec_context.name
        self.video_streams = len(self._container.streams.video)
        self.rotation = 0  # degrees counter-clockwise, as the last decoded frame said
        self._timestamps = None if timestamps is None else np.asarray(timestamps, dtype=np.int64)

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._container.close()

    @property
    def declared_frames(self) -> int:
        """The frame count the file declares for its video stream; 0 when it declares none.

        The stream's own count, else its duration times its rate: the stream's duration,
        Matroska's per-track ``DURATION`` tag, or the container's duration only where the video
        is its only stream (else it is the longest stream's: an audio track longer than the
        video). Where the stream starts late, a duration may be an end time (Matroska writes it
        so) or a span (MP4): the smaller reading is taken, so that a misread header never calls
        a whole file short. Only a hint: ``harness.data.byo`` checks it against the packets."""
        if self._timestamps is not None:
            return len(self._timestamps)
        if self._stream.frames:
            return int(self._stream.frames)
        seconds = self._declared_seconds()
        if seconds is None:
            return 0
        start = self._start * self._time_base
        if 0 < start < seconds:
            seconds -= start
        return math.floor(seconds * self.fps + Fraction(1, 2))

    def _declared_seconds(self) -> Fraction | None:
        if self._stream.duration:
            return self._stream.duration * self._time_base
        for key, value in self._stream.metadata.items():
            if key.upper().startswith("DURATION"):  # "DURATION" or "DURATION-eng"
                seconds = _clock_seconds(value)
                if seconds:
                    return seconds
        if self._container.duration and len(self._container.streams) == 1:
            return Fraction(self._container.duration, 1_000_000)
        return None

    @property
    def mean_fps(self) -> float:
        """Frames per second: the stream's rate, or its frames over their span (variable rate)."""
        table = self._timestamps
        if table is None or len(table) < 2 or table[-1] == table[0]:
            return float(self.fps)
        return float((len(table) - 1) / ((int(table[-1]) - int(table[0])) * self._time_base))

    def index_of(self, pts: int) -> int:
        if self._timestamps is not None:
            return int(np.searchsorted(self._timestamps, pts))
        return round((pts - self._start) * self._time_base * self.fps)

    def _pts_of(self, index: int) -> int:
        if self._timestamps is not None:
            return int(self._timestamps[min(index, len(self._timestamps) - 1)])
        return self._start + round(Fraction(index) / self.fps / self._time_base)

    def packet_timestamps(self, limit: int | None = None) -> list[int]:
        """The pts of the first ``limit`` (or all) frames of the video stream, in presentation
        order, from its packets (demuxed, not decoded)."""
        return self._demuxed(self._start, limit)

    def tail_timestamps(self, frames: int) -> list[int]:
        """The pts of the frames from the keyframe at or before frame ``frames - 1`` to the end
        of the file (demuxed, not decoded): whether a declared count holds, for one GOP's
        packets rather than the whole file's."""
        return self._demuxed(self._pts_of(max(frames - 1, 0)), None)

    def _demuxed(self, pts: int, limit: int | None) -> list[int]:
        import av

        found: list[int] = []
        try:
            self._container.seek(pts, stream=self._stream, backward=True, any_frame=False)
            for packet in self._container.demux(self._stream):
                if packet.pts is not None:
                    found.append(packet.pts)
                if limit is not None and len(found) >= limit:
                    break
        except av.error.FFmpegError as exc:
            raise HarnessError(f"{self.path}: cannot read packets: {_reason(exc)}") from None
        return sorted(found)

    def constant_rate(self, timestamps: Sequence[int]) -> bool:
        """Whether the frames sit on the stream's rate grid from its start, one frame per slot
        (frame 0 at the stream's start time)."""
        if not timestamps:
            return True
        indices = [self.index_of(pts) for pts in timestamps]
        return indices == list(range(len(indices)))

    def end_slot(self, timestamps: Sequence[int]) -> float:
        """Where the last of ``timestamps`` ends, in frames of the stream's rate from its
        start: the frames a header's duration would count up to it."""
        if not timestamps:
            return 0.0
        return float((max(timestamps) - self._start) * self._time_base * self.fps) + 1

    def frames(
        self, start: int = 0, stop: int | None = None, *, pixel_format: str = "rgb24"
    ) -> Iterator[tuple[int, np.ndarray]]:
        """(index, frame) for frames ``start`` <= index < ``stop`` in order: RGB uint8 HxWx3,
        or HxW for ``pixel_format="gray"`` (lossless mask videos)."""
        import av

        try:
            # Always seek, frame 0 included: the container may be anywhere after earlier reads.
            self._container.seek(
                self._pts_of(start), stream=self._stream, backward=True, any_frame=False
            )
            for frame in self._container.decode(self._stream):
                if frame.pts is None:
                    raise HarnessError(f"{self.path}: frame without a timestamp: cannot index")
                index = self.index_of(frame.pts)
                if index < start:
                    continue
                if stop is not None and index >= stop:
                    return
                self.rotation = int(frame.rotation or 0)
                yield index, _upright(frame.to_ndarray(format=pixel_format), self.rotation)
        except av.error.FFmpegError as exc:
            raise HarnessError(
                f"{self.path}: cannot decode near frame {start}: {_reason(exc)}"
            ) from None

    def read(self, index: int) -> np.ndarray:
        """One frame by index (seek + decode forward)."""
        for found, image in self.frames(index, index + 1):
            if found == index:
                return image
        raise HarnessError(f"{self.path}: frame {index} not found (the video is shorter)")


def _upright(image: np.ndarray, rotation: int) -> np.ndarray:
    """The frame as its display matrix shows it: FFmpeg gives the rotation in degrees
    counter-clockwise, as ``np.rot90`` turns."""
    turns = round(rotation / 90) % 4
    return np.ascontiguousarray(np.rot90(image, turns)) if turns else image


def _clock_seconds(text: str) -> Fraction | None:
    """Seconds of a Matroska duration tag, "HH:MM:SS.nnnnnnnnn"; None when it is not one."""
    try:
        hours, minutes, seconds = str(text).strip().split(":")
        return (int(hours) * 60 + int(minutes)) * 60 + Fraction(seconds)
    except ValueError:
        return None


def _reason(exc: BaseException) -> str:
    """FFmpeg's own words ("Invalid data found when processing input"), without errno noise."""
    return one_line(getattr(exc, "strerror", None) or exc)
