"""A camera's video at the disk's speed: a pool of encoded segments, repeated bit for bit.

The pool (``pool_segments`` segments of ``segment_gops`` closed GOPs, plus a shorter tail when the
length is not a whole number of segments) is rendered and encoded once per camera and kept beside
the video (``videos/.cam000.pool.mp4``) until the video is complete. The video is then written by
copying the pool's packets segment after segment with rewritten timestamps (PyAV remux, no
re-encoding), in the order ``tracks.Schedule`` records, so every frame's mask is exact.

Resume: the muxer is deterministic (bit-exact Matroska, the same pool, the same schedule), so the
bytes of the video are a pure function of the scenario. The writer records how many bytes are
durably on disk; a resumed generation truncates the partial file there and replays the remux
without writing until it reaches that point (replaying costs CPU only; docs/datasets.md),
then appends. Nothing already written is written again.
"""

from __future__ import annotations

import itertools
import os
import time
from pathlib import Path
from typing import IO, Any

import numpy as np

from harness.data.progress import ProgressFile, read_progress
from harness.data.tracks import Schedule, Tracks
from harness.data.video import (
    POOL_CONTAINERS,
    SceneRenderer,
    frame_count,
    generate_tracks,
    open_encoder,
    outputs,
)
from harness.errors import HarnessError
from harness.files import atomic_write, disk_error
from harness.scenario import VideoGenerate

PROGRESS_EVERY_S = 2.0  # how often the writer records bytes and frames written
DURABLE_EVERY_S = 15.0  # how often it syncs them and records that as its resume point


def plan_schedule(params: VideoGenerate, video: int) -> tuple[Schedule, int]:
    """The schedule of camera ``video`` and the number of pool frames it needs.

    The first segments show the pool in order (each pool segment appears at least once); after
    that, segments are drawn at random, never the same one twice in a row."""
    segment = params.segment_gops * params.gop
    whole, tail = divmod(frame_count(params), segment)
    pool = min(params.pool_segments, whole)
    order = list(range(pool))
    rng = np.random.default_rng([params.seed, video, 0x5E])
    previous = order[-1] if order else 0
    for _ in range(whole - pool):
        choice = int(rng.integers(pool - 1)) if pool > 1 else 0
        if pool > 1 and choice >= previous:
            choice += 1
        order.append(choice)
        previous = choice
    starts = tuple(k * segment for k in range(pool))
    schedule = Schedule(segment, starts, tuple(order), pool * segment if tail else None)
    return schedule, pool * segment + tail


def pool_path(video_path: Path) -> Path:
    return video_path.with_name(f".{video_path.stem}.pool.mp4")


def partial_path(video_path: Path) -> Path:
    return video_path.with_name(f".{video_path.name}.partial")


def encode_pool(
    path: Path, params: VideoGenerate, renderer: SceneRenderer, frames: int, threads: int
) -> None:
    """Render and encode the pool's ``frames`` (MP4: it keeps decoding timestamps exact)."""
    import av

    # With a bitrate, the encoder's rate control starts low: an unsettled pool came out ~8 %
    # smaller a frame than a long encode (cheaper to decode). One GOP encoded first and dropped
    # brings it within a few % (docs/datasets.md).
    settle = params.gop if params.bitrate_kbps and frames >= params.gop else 0
    with atomic_write(path) as handle:
        container = av.open(handle, "w", format="mp4")
        try:
            stream = open_encoder(container, params, threads)
            drawn = renderer.video_frames(k % frames for k in range(-settle, frames))
            for pts, (_t, frame) in enumerate(drawn, start=-settle):
                frame.pts = pts
                container.mux([p for p in stream.encode(frame) if p.pts is not None and p.pts >= 0])
            container.mux(list(stream.encode(None)))
        finally:
            container.close()


class Packet:
    """One pool packet: its bytes and timestamps in pool frames' ticks."""

    __slots__ = ("data", "dts", "key", "pts")

    def __init__(self, data: bytes, pts: int, dts: int | None, key: bool) -> None:
        self.data, self.pts, self.dts, self.key = data, pts, dts, key


def read_pool(path: Path, schedule: Schedule) -> tuple[Any, list[list[Packet]], int]:
    """The pool's stream (a template for the output), its packets split by segment (the tail
    last), and the ticks of one frame in the stream's time base."""
    import av

    container = av.open(str(path))
    stream = container.streams.video[0]
    rate = stream.average_rate or stream.guessed_rate
    if not rate or stream.time_base is None:
        raise HarnessError(f"{path}: frame rate or time base unknown: cannot split the pool")
    ticks = 1 / (rate * stream.time_base)
    if ticks.denominator != 1:
        raise HarnessError(f"{path}: frame duration is not a whole number of ticks ({ticks})")
    tick = int(ticks)
    start = stream.start_time or 0
    packets: list[Packet] = []
    for p in container.demux(stream):
        if not p.size:
            continue
        if p.pts is None:
            raise HarnessError(f"{path}: packet without a timestamp: cannot split the pool")
        dts = None if p.dts is None else p.dts - start
        packets.append(Packet(bytes(p), p.pts - start, dts, p.is_keyframe))
    bounds = list(schedule.pool_starts)
    if schedule.tail_start is not None:
        bounds.append(schedule.tail_start)
    position = {p.pts // tick: i for i, p in enumerate(packets) if p.key}
    missing = [b for b in bounds if b not in position]
    if missing:
        raise HarnessError(
            f"{path}: no keyframe at pool frames {missing}: segments not GOP-aligned"
        )
    cuts = [position[b] for b in bounds] + [len(packets)]
    segments = [packets[lo:hi] for lo, hi in itertools.pairwise(cuts)]
    for first, chunk in zip(bounds, segments, strict=True):
        length = len(chunk)
        if {p.pts // tick for p in chunk} != set(range(first, first + length)):
            raise HarnessError(f"{path}: segment at pool frame {first} is not a closed GOP run")
    return (container, stream), segments, tick


class ReplaySink:
    """The output file as the muxer sees it: bytes below ``skip_below`` are already on disk and
    are not written again while the remux replays up to them; everything after (and any later
    patch of the header) is written."""

    def __init__(self, handle: IO[bytes], skip_below: int) -> None:
        self.handle, self.skip_below = handle, skip_below
        self.position = self.end = 0
        self._file_at = handle.tell()

    def write(self, data: bytes) -> int:
        size = len(data)
        stop = self.position + size
        if stop > self.skip_below:
            cut = max(0, self.skip_below - self.position)
            if self._file_at != self.position + cut:  # a seek flushes the file's buffer
                self.handle.seek(self.position + cut)
            self.handle.write(memoryview(data)[cut:])
            self._file_at = stop
            self.skip_below = 0  # past the resume point: every write from now on is new
        self.position = stop
        self.end = max(self.end, stop)
        return size

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self.position, os.SEEK_END: self.end}[whence]
        self.position = base + offset
        return self.position

    def tell(self) -> int:
        return self.position

    def flush(self) -> None:
        self.handle.flush()

    def durable(self) -> int:
        """Sync what is written; return the length of the file's complete prefix."""
        self.handle.flush()
        os.fdatasync(self.handle.fileno())
        return self.end


def make_from_pool(root: Path, params: VideoGenerate, index: int, threads: int = 1) -> None:
    """Write camera ``index``'s tracks and video from its pool (resuming a partial video)."""
    tracks_path, video_path = (root / name for name in outputs(params, index))
    video_path.parent.mkdir(parents=True, exist_ok=True)
    schedule, pool_frames = plan_schedule(params, index)
    pool_tracks = generate_tracks(params, index, frames=pool_frames)
    pool_file = pool_path(video_path)
    partial = partial_path(video_path)
    progress = ProgressFile(video_path, frame_count(params), PROGRESS_EVERY_S)
    if not pool_file.exists():
        progress.stage("encoding its pool")
        # A partial video continues only from its own pool: an encoder on other threads may
        # choose other bytes, and the replay would no longer match what is on disk.
        partial.unlink(missing_ok=True)
        renderer = SceneRenderer(params, index, pool_tracks)
        encode_pool(pool_file, params, renderer, pool_frames, threads)
    (container, stream), segments, tick = read_pool(pool_file, schedule)
    resume_at = 0
    if partial.exists():  # never past what the file holds (a progress file from another try)
        recorded = int(read_progress(video_path).get("durable_bytes", 0))
        resume_at = min(recorded, partial.stat().st_size)
    total = frame_count(params)
    try:
        with open(partial, "r+b" if resume_at else "wb") as handle:
            handle.truncate(resume_at)
            sink = ReplaySink(handle, resume_at)
            container_format = POOL_CONTAINERS[params.codec][0]
            _remux(sink, stream, segments, schedule, total, tick, progress, container_format)
            handle.flush()
            os.fsync(handle.fileno())
        Tracks(pool_tracks.table, params.width, params.height, total, schedule).save(
            tracks_path, params.fps
        )
        os.replace(partial, video_path)
    except OSError as exc:
        raise disk_error(exc, video_path) from None
    finally:
        container.close()
    progress.remove()
    pool_file.unlink(missing_ok=True)


def _remux(
    sink: ReplaySink,
    template: Any,
    segments: list[list[Packet]],
    schedule: Schedule,
    total: int,
    tick: int,
    progress: ProgressFile,
    container_format: str,
) -> None:
    """Mux the pool's segments in the schedule's order, timestamps shifted to their place."""
    import av

    # bitexact: no writing-application string or random segment UID, so a replay is identical
    out = av.open(sink, "w", format=container_format, options={"fflags": "+bitexact"})
    try:
        stream = out.add_stream_from_template(template)
        time_base = template.time_base
        plan = [
            (schedule.pool_starts[pool], j * schedule.segment_frames, segments[pool])
            for j, pool in enumerate(schedule.order)
        ]
        if schedule.tail_start is not None:
            end = len(schedule.order) * schedule.segment_frames
            plan.append((schedule.tail_start, end, segments[-1]))
        # One PyAV packet per pool packet, reused at every repetition: the muxer takes a new
        # reference to its bytes and the timestamps are set afresh before each use.
        made = {id(item): _av_packet(av, item) for chunk in segments for item in chunk}
        frames = 0
        synced = time.monotonic()
        for source, target, packets in plan:
            shift = (target - source) * tick
            for item in packets:
                packet = made[id(item)]
                packet.pts = item.pts + shift
                packet.dts = None if item.dts is None else item.dts + shift
                packet.duration = tick  # else Matroska's duration misses the last frame
                packet.time_base = time_base
                packet.stream = stream
                out.mux_one(packet)
            frames = min(total, target + len(packets))
            if progress.due():
                now = time.monotonic()
                if now - synced >= DURABLE_EVERY_S:
                    synced = now
                    progress.record(sink.end, frames, sink.durable())
                else:
                    progress.record(sink.end, frames)
    finally:
        out.close()


def _av_packet(av: Any, item: Packet) -> Any:
    packet = av.Packet(item.data)
    packet.is_keyframe = item.key
    return packet
