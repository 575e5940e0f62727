"""Frame counts of brought videos come from their packets where the container misdeclares them
(an audio track longer or shorter than the video, a late start), and a video holding fewer frames
than it declares is named with both counts: refused when cut short, said when frames are missing
between its first and last. Every counted frame decodes, by index, through the reader and the
decoded-video source."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from harness.data.byo import HEAD_PACKETS, index_dataset
from harness.data.video_reader import VideoReader
from harness.errors import HarnessError
from harness.pipeline.plan import SampleRef
from harness.pipeline.sources import DecodedVideoSource
from harness.scenario import VideoDataset

FRAMES = 90  # 3 s at 30 fps
OFFSET = 30_000  # frames: a stream that starts 1000 s in


def _write(
    path: Path,
    frames: int = FRAMES,
    *,
    audio_s: float | None = None,
    offset: int = 0,
    noise: bool = False,
) -> None:
    """A short H.264 video (B-frames, GOP of 10), with an AAC track of ``audio_s`` seconds
    beside it, its first frame at ``offset`` frames; ``noise``: frames of random pixels, which
    fill many clusters of a Matroska file (else flat frames, quick to encode)."""
    rng = np.random.default_rng(0)
    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=30)
        video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        video.options = {"g": "10", "bf": "2"}
        audio = None if audio_s is None else container.add_stream("aac", rate=44100)
        for index in range(frames):
            image = np.full((48, 64, 3), index % 256, dtype=np.uint8)
            if noise:
                image = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = offset + index
            container.mux(video.encode(frame))
        container.mux(video.encode(None))
        if audio is not None:
            for start in range(0, int(audio_s * 44100), 1024):
                tone = np.sin(np.arange(start, start + 1024, dtype=np.float32) / 10)[None, :]
                samples = av.AudioFrame.from_ndarray(tone / 10, format="fltp", layout="mono")
                samples.sample_rate, samples.pts = 44100, start
                container.mux(audio.encode(samples))
            container.mux(audio.encode(None))


def _index(folder: Path) -> dict:
    dataset = VideoDataset(kind="video", path=str(folder), classes=4, label_rule="luma_bins")
    return index_dataset(dataset, min_side=16)


def _assert_every_frame_decodes(folder: Path, manifest: dict) -> None:
    source = DecodedVideoSource(folder, manifest, 1)
    for file, record in enumerate(manifest["files"]):
        frames = record["frames"]
        with VideoReader(folder / record["path"], timestamps=record.get("pts")) as reader:
            assert [index for index, _ in reader.frames()] == list(range(frames)), record
            assert reader.read(frames - 1).shape == (48, 64, 3)
        for index in (frames - 1, 0, frames // 2):  # random access through the run's source
            image, _mask, _reads = source.load(SampleRef(file, index, 0, 0), 16)
            assert image.shape == (16, 16, 3)


@pytest.mark.parametrize(
    ("name", "frames", "audio_s", "offset"),
    [
        ("long_audio.mkv", FRAMES, 6.0, 0),  # the container's duration is the audio's
        ("short_audio.mkv", FRAMES, 1.0, 0),
        ("late_start.mp4", FRAMES, None, OFFSET),  # the stream starts 1000 s in
        ("late_start.mkv", FRAMES, None, OFFSET),  # Matroska's durations end at 1003 s
        ("late_start_audio.mkv", FRAMES, 1.0, OFFSET),
        ("long.mkv", HEAD_PACKETS + 88, 30.0, 0),  # past the head: its tail checks the count
        ("long_late.mkv", HEAD_PACKETS + 88, None, OFFSET),
    ],
)
def test_misdeclared_videos_are_counted_from_their_packets(
    tmp_path: Path, name: str, frames: int, audio_s: float | None, offset: int
) -> None:
    folder = tmp_path / "footage"
    folder.mkdir()
    _write(folder / name, frames, audio_s=audio_s, offset=offset)
    manifest = _index(folder)
    assert manifest["files"][0]["frames"] == frames
    assert "pts" not in manifest["files"][0]  # on the rate's grid: no timestamp table
    _assert_every_frame_decodes(folder, manifest)


def test_a_video_cut_short_is_refused_with_both_counts(tmp_path: Path) -> None:
    folder = tmp_path / "footage"
    folder.mkdir()
    _write(tmp_path / "whole.mkv", audio_s=3.0)
    data = (tmp_path / "whole.mkv").read_bytes()
    (folder / "half.mkv").write_bytes(data[: len(data) // 2])
    with pytest.raises(HarnessError) as caught:
        _index(folder)
    message = str(caught.value)
    assert message.startswith(f"{folder / 'half.mkv'}: truncated or damaged: "), message
    assert message.endswith(f"frames in its packets, its header declares {FRAMES}"), message
    assert "\n" not in message


def test_a_video_damaged_in_the_middle_is_named_and_its_frames_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "footage"
    folder.mkdir()
    _write(tmp_path / "whole.mkv", noise=True)
    data = bytearray((tmp_path / "whole.mkv").read_bytes())
    middle, size = len(data) // 2, len(data) // 5
    data[middle : middle + size] = bytes(size)  # zeros over a fifth of it, from half way
    (folder / "damaged.mkv").write_bytes(bytes(data))
    manifest = _index(folder)
    found = manifest["files"][0]["frames"]
    assert 0 < found < FRAMES
    warning = capsys.readouterr().err.strip()
    assert warning.startswith(
        f"warning: {folder / 'damaged.mkv'}: {found} frames in its packets, its header "
        f"declares {FRAMES}, the missing ones between its first and last"
    ), warning
    assert "\n" not in warning
    with VideoReader(folder / "damaged.mkv", timestamps=manifest["files"][0]["pts"]) as reader:
        assert [index for index, _ in reader.frames()][-1] == found - 1
