"""Surveillance-style videos: a fixed textured background per camera, objects moving across it.

Layout of a video dataset folder::

    dataset.json
    videos/cam000.mp4            the compressed video (H.264/HEVC in MP4, VP9 in WebM, MJPEG in MKV)
    videos/cam000.tracks.json    the objects' tracks, from which every frame's mask is drawn exactly

A mask is not stored per frame: it is drawn from the tracks (integer arithmetic only, so it is
bit-exact anywhere), which costs far less than decoding a lossless mask stream beside the video.

``VideoReader`` is the one place that maps frame indices to timestamps, for random access (seek to
the keyframe at or before the frame, decode forward) and for sequential decoding alike.
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import IO, Any

import numpy as np

from harness.data import render
from harness.data.files import atomic_write, read_json, write_json_atomic
from harness.data.manifest import check_format
from harness.errors import HarnessError
from harness.scenario import VideoGenerate

GENERATOR_VERSION = 1
TRACKS_FORMAT = "harness-tracks"
TRACKS_FORMAT_VERSION = 1

# codec name in scenarios -> (FFmpeg encoder, container format, file suffix, pixel format)
CODECS: dict[str, tuple[str, str, str, str]] = {
    "h264": ("libx264", "mp4", ".mp4", "yuv420p"),
    "hevc": ("libx265", "mp4", ".mp4", "yuv420p"),
    "vp9": ("libvpx-vp9", "webm", ".webm", "yuv420p"),
    "mjpeg": ("mjpeg", "matroska", ".mkv", "yuvj420p"),
}

# Track columns. Positions are fixed point (1/256 pixel) so that motion is exact integer maths.
TRACK_COLUMNS = ("cls", "shape", "w", "h", "t0", "t1", "x0", "y0", "vx", "vy", "variant")
CLS, SHAPE, W, H, T0, T1, X0, Y0, VX, VY, VARIANT = range(len(TRACK_COLUMNS))
FIXED = 256
NOISE_PLANES = 8  # precomputed noisy backgrounds, cycled: sensor noise at no per-frame cost


def video_name(index: int, codec: str) -> str:
    return f"videos/cam{index:03d}{CODECS[codec][2]}"


def tracks_name(index: int) -> str:
    return f"videos/cam{index:03d}.tracks.json"


def outputs(params: VideoGenerate, index: int) -> tuple[str, ...]:
    return tracks_name(index), video_name(index, params.codec)


def job_count(params: VideoGenerate) -> int:
    return params.videos


# --- tracks and masks ---------------------------------------------------------------------------


class Tracks:
    """Objects crossing one camera's view; draws the exact class mask of any frame."""

    def __init__(self, table: np.ndarray, width: int, height: int, frames: int) -> None:
        self.table = table  # int64 [objects, len(TRACK_COLUMNS)], sorted by t0
        self.width, self.height, self.frames = width, height, frames
        self._longest = int((table[:, T1] - table[:, T0]).max()) if len(table) else 0

    @classmethod
    def generate(cls, params: VideoGenerate, video: int) -> Tracks:
        """Objects enter at a random edge and cross the view at constant speed; arrivals are a
        Poisson process sized so that about ``params.objects`` are in view at any time."""
        rng = np.random.default_rng([params.seed, video, 0x7A])
        width, height, frames = params.width, params.height, params.frames
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
        return cls(table, width, height, frames)

    def alive(self, t: int) -> np.ndarray:
        """Rows of the objects in view at frame ``t``, in drawing order."""
        starts = self.table[:, T0]
        lo = int(np.searchsorted(starts, t - self._longest, side="right"))
        hi = int(np.searchsorted(starts, t, side="right"))
        rows = self.table[lo:hi]
        return rows[rows[:, T1] > t]

    @staticmethod
    def position(row: np.ndarray, t: int) -> tuple[int, int]:
        """Top-left corner of the object's box at frame ``t`` (floor of fixed point: exact)."""
        dt = t - int(row[T0])
        return (int(row[Y0]) + int(row[VY]) * dt) // FIXED, (
            int(row[X0]) + int(row[VX]) * dt
        ) // FIXED

    def mask(self, t: int) -> np.ndarray:
        """The class of every pixel of frame ``t``, uint8 HxW."""
        mask = np.zeros((self.height, self.width), dtype=np.uint8)
        for row in self.alive(t):
            top, left = self.position(row, t)
            outline = _outline(int(row[SHAPE]), int(row[H]), int(row[W]))
            render.paste(None, mask, outline, top, left, None, int(row[CLS]))
        return mask

    def save(self, path: Path, fps: int) -> None:
        write_json_atomic(
            path,
            {
                "format": TRACKS_FORMAT,
                "format_version": TRACKS_FORMAT_VERSION,
                "width": self.width,
                "height": self.height,
                "frames": self.frames,
                "fps": fps,
                "fixed_point": FIXED,
                "shapes": list(render.SHAPES),
                "columns": list(TRACK_COLUMNS),
                "tracks": self.table.tolist(),
            },
        )

    @classmethod
    def load(cls, path: Path) -> Tracks:
        document = read_json(path)
        if document is None:
            raise HarnessError(f"{path}: missing: the masks of its video cannot be drawn")
        check_format(path, document, TRACKS_FORMAT, TRACKS_FORMAT_VERSION)
        table = np.array(document["tracks"], dtype=np.int64).reshape(-1, len(TRACK_COLUMNS))
        return cls(table, document["width"], document["height"], document["frames"])


@functools.lru_cache(maxsize=512)
def _outline(shape: int, height: int, width: int) -> np.ndarray:
    return render.shape_mask(shape, height, width)


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
        image = self.backgrounds[t % len(self.backgrounds)].copy()
        mask = np.zeros(image.shape, dtype=np.uint8)
        for row in self.tracks.alive(t):
            top, left = self.tracks.position(row, t)
            height, width = int(row[H]), int(row[W])
            outline = _outline(int(row[SHAPE]), height, width)
            texture = render.tiled(self.bank[int(row[CLS]), int(row[VARIANT])], height, width)
            render.paste(image, mask, outline, top, left, texture, int(row[CLS]))
        return image, mask


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
    random-access cost must be the configured GOP, not whatever the encoder decides)."""
    gop = params.gop
    quality: dict[str, str] = {} if params.bitrate_kbps else {"crf": str(params.crf)}
    if params.codec == "h264":
        return {
            **quality,
            "preset": params.preset,
            "x264-params": f"keyint={gop}:min-keyint={gop}:scenecut=0",
        }
    if params.codec == "hevc":
        return {
            **quality,
            "preset": params.preset,
            "x265-params": f"keyint={gop}:min-keyint={gop}:scenecut=0:log-level=error",
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


def make(root: str, params: VideoGenerate, index: int, threads: int = 1) -> None:
    """Generate camera ``index``: its tracks, then its video, streamed frame by frame."""
    import av

    tracks_path, video_path = (Path(root) / name for name in outputs(params, index))
    video_path.parent.mkdir(parents=True, exist_ok=True)
    tracks = Tracks.generate(params, index)
    tracks.save(tracks_path, params.fps)
    renderer = SceneRenderer(params, index, tracks)
    encoder, container_format, _suffix, pix_fmt = CODECS[params.codec]
    with atomic_write(video_path) as handle:
        container = av.open(handle, "w", format=container_format)
        try:
            stream = container.add_stream(encoder, rate=params.fps)
            stream.width, stream.height, stream.pix_fmt = params.width, params.height, pix_fmt
            stream.codec_context.gop_size = params.gop
            stream.codec_context.thread_count = threads
            if params.bitrate_kbps:
                stream.codec_context.bit_rate = params.bitrate_kbps * 1000
            stream.options = encoder_options(params)
            for t in range(params.frames):
                canvas, _mask = renderer.packed_frame(t)
                frame = av.VideoFrame.from_ndarray(render.rgba_view(canvas), format="rgba")
                frame.pts = t
                container.mux(stream.encode(frame))
            container.mux(stream.encode(None))
        finally:
            container.close()


def describe(root: Path, params: VideoGenerate) -> list[dict[str, Any]]:
    records = []
    for index in range(params.videos):
        tracks, video = outputs(params, index)
        records.append(
            {
                "path": video,
                "tracks": tracks,
                "bytes": os.path.getsize(root / video),
                "frames": params.frames,
                "width": params.width,
                "height": params.height,
                "fps": params.fps,
                "codec": params.codec,
                "gop": params.gop,
            }
        )
    return records


# --- decoding -----------------------------------------------------------------------------------


class VideoReader:
    """Decode frames of one video by index: random access or sequential, RGB uint8 arrays.

    A random frame costs a seek to the keyframe at or before it plus decoding forward from there:
    on average half a GOP of decodes, which is what makes the study's "decoded" mode CPU heavy.
    """

    def __init__(
        self, path: str | os.PathLike[str], threads: int = 1, file: IO[bytes] | None = None
    ) -> None:
        """``file``, when given, is the open file to read (e.g. one that counts its reads);
        ``path`` then only names it in messages."""
        import av

        self.path = Path(path)
        try:
            self._container = av.open(file if file is not None else str(path))
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
        self._time_base = self._stream.time_base
        self._start = self._stream.start_time or 0
        self.width, self.height = self._stream.width, self._stream.height
        self.codec = self._stream.codec_context.name

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._container.close()

    @property
    def declared_frames(self) -> int:
        """Frame count from the container header, or from its duration; 0 when neither is known."""
        if self._stream.frames:
            return int(self._stream.frames)
        duration = self._stream.duration or self._container.duration
        if duration:
            base = self._time_base if self._stream.duration else Fraction(1, 1_000_000)
            return math.floor(duration * base * self.fps + Fraction(1, 2))
        return 0

    def index_of(self, pts: int) -> int:
        return round((pts - self._start) * self._time_base * self.fps)

    def _pts_of(self, index: int) -> int:
        return self._start + round(Fraction(index) / self.fps / self._time_base)

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
                yield index, frame.to_ndarray(format=pixel_format)
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


def _reason(exc: BaseException) -> str:
    """FFmpeg's own words ("Invalid data found when processing input"), without errno noise."""
    text = getattr(exc, "strerror", None) or str(exc)
    return " ".join(str(text).split())
