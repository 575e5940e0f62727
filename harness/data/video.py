"""Surveillance-style videos: a fixed textured background per camera, objects moving across it.

Layout of a video dataset folder::

    dataset.json
    videos/cam000.mkv            the compressed video (Matroska; WebM for VP9)
    videos/cam000.tracks.json    the objects' tracks, from which every frame's mask is drawn exactly

Two ways to make the video (``generate.unique``):

- ``pool`` (the default): encode a small pool of distinct segments per camera (``pool_segments``
  of ``segment_gops`` closed GOPs each), then write the whole length by repeating those segments
  at the bitstream level, packets copied with rewritten timestamps, no re-encoding (the remux is
  ``harness.data.remux``). The video has the parameters that set what reading it costs (codec,
  resolution, GOP, bitrate, frame size, objects), and it is written at the disk's speed. The
  tracks repeat with the segments (``tracks.Schedule``), so every frame's mask stays exact.
- ``full``: every frame rendered and encoded (H.264/HEVC in MP4, VP9 in WebM, MJPEG in MKV), for
  storage whose deduplication or compression could exploit repeated segments.

A mask is not stored per frame: it is drawn from the tracks (``harness.data.tracks``). This
module generates: the tracks, the frames they are drawn on, and their encoding. Reading the videos
back is ``harness.data.video_reader``'s job.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from harness.data import render
from harness.data.manifest import FileRecord
from harness.data.tracks import (
    CLS,
    FIXED,
    SHAPE,
    TRACK_COLUMNS,
    VARIANT,
    H,
    Tracks,
    W,
    shape_outline,
)
from harness.files import atomic_write
from harness.scenario import VideoGenerate

GENERATOR_VERSION = 1

# codec name in scenarios -> (FFmpeg encoder, container format, file suffix, pixel format)
CODECS: dict[str, tuple[str, str, str, str]] = {
    "h264": ("libx264", "mp4", ".mp4", "yuv420p"),
    "hevc": ("libx265", "mp4", ".mp4", "yuv420p"),
    "vp9": ("libvpx-vp9", "webm", ".webm", "yuv420p"),
    "mjpeg": ("mjpeg", "matroska", ".mkv", "yuvj420p"),
}

NOISE_PLANES = 8  # precomputed noisy backgrounds, cycled: sensor noise at no per-frame cost


# Pool mode writes Matroska (WebM for VP9): a random frame seeks through its Cues by presentation
# time, whereas a fragmented MP4's fragments are found by decoding time, which with B-frames lands
# after the last frames of a GOP.
POOL_CONTAINERS: dict[str, tuple[str, str]] = {
    "h264": ("matroska", ".mkv"),
    "hevc": ("matroska", ".mkv"),
    "vp9": ("webm", ".webm"),
    "mjpeg": ("matroska", ".mkv"),
}


def video_name(index: int, codec: str, unique: str = "full") -> str:
    suffix = CODECS[codec][2] if unique == "full" else POOL_CONTAINERS[codec][1]
    return f"videos/cam{index:03d}{suffix}"


def tracks_name(index: int) -> str:
    return f"videos/cam{index:03d}.tracks.json"


def outputs(params: VideoGenerate, index: int) -> tuple[str, ...]:
    return tracks_name(index), video_name(index, params.codec, params.unique)


def job_count(params: VideoGenerate) -> int:
    return params.videos


def prepare(_params: VideoGenerate) -> None:
    """Nothing to share between cameras: each renders and encodes its own pool."""


def unit_bytes(params: VideoGenerate) -> tuple[float, bool]:
    """Bytes a frame takes on disk (an estimate): from the bitrate when one is set, else
    measured by encoding one segment of camera 0 as the generator will."""
    if params.bitrate_kbps:
        return params.bitrate_kbps * 1000 / 8 / params.fps, False
    import io

    import av

    frames = params.segment_gops * params.gop
    if params.frames is not None:
        frames = min(frames, params.frames)
    renderer = SceneRenderer(params, 0, generate_tracks(params, 0, frames=frames))
    buffer = io.BytesIO()
    container = av.open(buffer, "w", format=CODECS[params.codec][1])
    try:
        stream = open_encoder(container, params, threads=1)
        encode_frames(container, stream, renderer, range(frames))
    finally:
        container.close()
    return buffer.tell() / frames, False


def frame_count(params: VideoGenerate) -> int:
    assert params.frames is not None, "the frame count is resolved before generation"
    return params.frames


# --- tracks ----------------------------------------------------------------------------------


def generate_tracks(params: VideoGenerate, video: int, frames: int | None = None) -> Tracks:
    """Objects enter at a random edge and cross the view at constant speed; arrivals are a
    Poisson process sized so that about ``params.objects`` are in view at any time.
    ``frames``: how many frames to draw tracks for (the pool's, in pool mode)."""
    rng = np.random.default_rng([params.seed, video, 0x7A])
    width, height = params.width, params.height
    frames = frame_count(params) if frames is None else frames
    rows = []
    mean_crossing = 5.0 * params.fps  # frames an object takes to cross, on average
    rate = params.objects / mean_crossing
    t = -int(mean_crossing)  # start before frame 0 so the first frame already has objects
    while True:
        t += max(1, int(rng.exponential(1 / rate)))
        if t >= frames:
            break
        obj_h = int(rng.integers(max(4, height // 8), max(5, height // 3)))
        obj_w = int(obj_h * rng.uniform(0.6, 1.8))
        crossing_frames = rng.uniform(0.5, 1.5) * mean_crossing
        speed = max(1, int((width + obj_w) * FIXED / crossing_frames))  # 1/256 px per frame
        if rng.random() < 0.5:
            x0, vx = -obj_w * FIXED, speed
        else:
            x0, vx = width * FIXED, -speed
        y0 = int(rng.integers(-obj_h // 3, height - 2 * obj_h // 3)) * FIXED
        vy = int(rng.integers(-FIXED // 4, FIXED // 4 + 1))
        t1 = t + -(-((width + obj_w) * FIXED) // speed) + 1
        if t1 <= 0:
            continue
        rows.append(
            (
                int(rng.integers(1, params.classes)),
                int(rng.integers(len(render.SHAPES))),
                obj_w,
                obj_h,
                t,
                t1,
                x0,
                y0,
                vx,
                vy,
                int(rng.integers(4)),
            )
        )
    table = np.array(rows, dtype=np.int64).reshape(-1, len(TRACK_COLUMNS))
    return Tracks(table, width, height, frames)


# --- rendering and encoding ---------------------------------------------------------------------


class SceneRenderer:
    """Draws the frames of one camera: its background, plus the tracked objects, textured."""

    def __init__(self, params: VideoGenerate, video: int, tracks: Tracks) -> None:
        self.tracks = tracks
        self.bank = _bank(params.seed, params.classes)
        self.backgrounds = _backgrounds(params, video, self.bank)

    def frame(self, t: int) -> tuple[np.ndarray, np.ndarray]:
        """RGB uint8 HxWx3 and class mask uint8 HxW of frame ``t``."""
        canvas, mask = self.packed_frame(t)
        return render.unpack(canvas), mask

    def packed_frame(self, t: int) -> tuple[np.ndarray, np.ndarray]:
        """Frame ``t`` as a packed RGBX canvas (see ``render.pack``) and its class mask."""
        image = np.empty_like(self.backgrounds[0])
        mask = np.zeros(image.shape, dtype=np.uint8)
        self.draw(t, image, mask)
        return image, mask

    def draw(self, t: int, image: np.ndarray, mask: np.ndarray | None = None) -> None:
        """Draw frame ``t`` into the packed canvas ``image`` (and its classes into ``mask``, which
        must hold zeros, when one is given)."""
        np.copyto(image, self.backgrounds[t % len(self.backgrounds)])
        for row in self.tracks.alive(t):
            top, left = self.tracks.position(row, t)
            height, width = int(row[H]), int(row[W])
            outline = shape_outline(int(row[SHAPE]), height, width)
            texture = render.tiled(self.bank[int(row[CLS]), int(row[VARIANT])], height, width)
            render.paste(image, mask, outline, top, left, texture, int(row[CLS]))

    def video_frames(self, frames: Iterable[int]) -> Iterator[tuple[int, Any]]:
        """(t, PyAV RGBA frame) for each ``t``, drawn in place into one reused frame: what an
        encoder needs, without a fresh 8 MB canvas and a copy per 1080p frame. The frame is
        overwritten by the next one; encoders take a converted copy (they encode YUV)."""
        import av

        height, width = self.backgrounds.shape[1:]
        frame = av.VideoFrame(width, height, "rgba")
        pitch = frame.planes[0].line_size // 4
        canvas = np.frombuffer(memoryview(frame.planes[0]), dtype=np.uint32).reshape(height, pitch)
        canvas = canvas[:, :width]
        for t in frames:
            self.draw(t, canvas)
            yield t, frame


@functools.lru_cache(maxsize=2)
def _bank(seed: int, classes: int) -> np.ndarray:
    return render.pack(render.texture_bank(seed, classes))


def _backgrounds(params: VideoGenerate, video: int, bank: np.ndarray) -> np.ndarray:
    """A camera's fixed scene (ground texture, lighting gradient, static blocks, all class 0),
    with ``NOISE_PLANES`` copies carrying independent sensor noise; packed canvases."""
    rng = np.random.default_rng([params.seed, video, 0xB6])
    height, width = params.height, params.width
    ground_tile = render.rgba_view(bank[0, video % bank.shape[1]])[..., :3]
    ground = render.tiled(ground_tile, height, width).astype(np.float32)
    gradient = np.linspace(rng.uniform(0.6, 0.9), rng.uniform(1.0, 1.3), height, dtype=np.float32)
    scene = ground * gradient[:, None, None]
    for _ in range(6):  # static scenery: walls, kerbs, parked things; still background
        block_h, block_w = (
            int(rng.integers(height // 10, height // 3)),
            int(rng.integers(width // 10, width // 3)),
        )
        top, left = int(rng.integers(0, height - block_h)), int(rng.integers(0, width - block_w))
        scene[top : top + block_h, left : left + block_w] *= rng.uniform(0.5, 1.4)
    planes = np.empty((NOISE_PLANES if params.noise else 1, height, width), dtype=np.uint32)
    for plane in planes:
        noisy = scene
        if params.noise:
            noisy = scene + rng.integers(-params.noise, params.noise + 1, size=scene.shape)
        plane[...] = render.pack(np.clip(noisy, 0, 255).astype(np.uint8))
    return planes


def encoder_options(params: VideoGenerate) -> dict[str, str]:
    """FFmpeg private options for the scenario's codec, quality and fixed GOP (no scene cuts:
    random-access cost must be the configured GOP, not whatever the encoder decides). Pool
    segments must also be closed GOPs (x265 opens them by default) so that any segment can
    follow any other."""
    gop = params.gop
    quality: dict[str, str] = {} if params.bitrate_kbps else {"crf": str(params.crf)}
    if params.codec in ("h264", "hevc"):
        # x265 logs every encode to stderr unless told not to; x264 has no such option.
        library, quiet = ("x264", "") if params.codec == "h264" else ("x265", ":log-level=error")
        if params.codec == "hevc" and params.unique == "pool":
            quiet += ":open-gop=0"
        return {
            **quality,
            "preset": params.preset,
            f"{library}-params": f"keyint={gop}:min-keyint={gop}:scenecut=0{quiet}",
        }
    if params.codec == "vp9":
        vp9 = {
            "deadline": "realtime",
            "cpu-used": "8",
            "lag-in-frames": "0",
            "row-mt": "1",
            "g": str(gop),
            "keyint_min": str(gop),
        }
        return {**vp9, **quality, "b": "0"} if not params.bitrate_kbps else vp9
    # MJPEG: every frame is a keyframe; map crf 0..63 onto the JPEG quantiser scale 2..31.
    scale = str(max(2, min(31, 2 + (params.crf or 23) * 29 // 63)))
    return {} if params.bitrate_kbps else {"qmin": scale, "qmax": scale}


def open_encoder(container: Any, params: VideoGenerate, threads: int) -> Any:
    """The video stream of ``container``, set up to encode the scenario's parameters."""
    encoder, _format, _suffix, pix_fmt = CODECS[params.codec]
    stream = container.add_stream(encoder, rate=params.fps)
    stream.width, stream.height, stream.pix_fmt = params.width, params.height, pix_fmt
    stream.codec_context.gop_size = params.gop
    stream.codec_context.thread_count = threads
    if params.bitrate_kbps:
        stream.codec_context.bit_rate = params.bitrate_kbps * 1000
    stream.options = encoder_options(params)
    return stream


def encode_frames(
    container: Any,
    stream: Any,
    renderer: SceneRenderer,
    frames: range,
    on_frame: Any = None,
) -> None:
    """Render and encode ``frames`` into ``container``, then flush the encoder."""
    for t, frame in renderer.video_frames(frames):
        frame.pts = t
        container.mux(stream.encode(frame))
        if on_frame is not None:
            on_frame(t + 1)
    container.mux(stream.encode(None))


def make_full(root: Path, params: VideoGenerate, index: int, threads: int = 1) -> None:
    """Every frame rendered and encoded, streamed frame by frame (``unique: full``)."""
    import av

    from harness.data.progress import ProgressFile

    tracks_path, video_path = (root / name for name in outputs(params, index))
    video_path.parent.mkdir(parents=True, exist_ok=True)
    tracks = generate_tracks(params, index)
    tracks.save(tracks_path, params.fps)
    renderer = SceneRenderer(params, index, tracks)
    container_format = CODECS[params.codec][1]
    progress = ProgressFile(video_path, frame_count(params))
    with atomic_write(video_path) as handle:
        container = av.open(handle, "w", format=container_format)

        def report(done: int) -> None:
            if progress.due():
                progress.record(handle.tell(), done)

        try:
            stream = open_encoder(container, params, threads)
            encode_frames(container, stream, renderer, range(frame_count(params)), report)
        finally:
            container.close()
    progress.remove()


def describe(root: Path, params: VideoGenerate) -> list[FileRecord]:
    """The manifest records of every video, from what is on disk."""
    records: list[FileRecord] = []
    for index in range(params.videos):
        tracks, video = outputs(params, index)
        records.append(
            {
                "path": video,
                "tracks": tracks,
                "bytes": os.path.getsize(root / video),
                "frames": frame_count(params),
                "width": params.width,
                "height": params.height,
                "fps": params.fps,
                "codec": params.codec,
                "gop": params.gop,
                "unique": params.unique,
            }
        )
    return records
