"""Bring-your-own folders as real collections are: every Pillow image mode, EXIF-turned photos,
masks in several modes, and awkward videos (several streams, odd sides, variable frame rate,
rotation metadata). Built with Pillow and PyAV, tiny, in a fraction of a second."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image

WIDTH, HEIGHT = 40, 48  # images as shown; crops of 16 fit twice in height (one band held out)
CLASSES = 4

# Pillow mode -> file name; every mode the pipelines must read as RGB.
IMAGE_MODES = {
    "L": "gray.png",
    "LA": "gray_alpha.png",
    "P": "palette.png",
    "RGBA": "rgba.png",
    "I;16": "deep16.png",
    "I": "int32.tif",
    "F": "float.tif",
    "CMYK": "cmyk.jpg",
    "1": "bilevel.png",
    "RGB": "turned.jpg",  # stored sideways, EXIF orientation 6 turns it upright
}
MASK_MODES = ("L", "P", "I;16", "1")  # cycled over the images' masks


def reference_rgb(index: int) -> np.ndarray:
    """The picture image file ``index`` is made from (as shown, HxWx3): smooth ramps, which
    JPEG keeps close and which show which way up a picture is."""
    rows, cols = np.mgrid[0:HEIGHT, 0:WIDTH]
    red = rows * 255 // (HEIGHT - 1)
    green = cols * 255 // (WIDTH - 1)
    blue = np.full_like(rows, (index * 37) % 256)
    return np.stack([red, green, blue], axis=2).astype(np.uint8)


def write_image_folder(folder: Path) -> dict[str, str]:
    """``folder/images`` in every mode of IMAGE_MODES with ``folder/masks`` in MASK_MODES;
    returns image file name -> its mode."""
    (folder / "images").mkdir(parents=True)
    (folder / "masks").mkdir()
    written = {}
    for index, (mode, name) in enumerate(IMAGE_MODES.items()):
        rgb = Image.fromarray(reference_rgb(index))
        gray = np.asarray(rgb.convert("L"))
        path = folder / "images" / name
        if mode == "I;16":
            Image.fromarray(gray.astype(np.uint16) * 257).save(path)
        elif mode == "I":
            Image.fromarray(gray.astype(np.int32) * 257).save(path)
        elif mode == "F":
            Image.fromarray(gray.astype(np.float32) / 255).save(path)
        elif mode == "RGB":
            exif = Image.Exif()
            exif[0x0112] = 6  # shown turned 90 degrees clockwise from how it is stored
            rgb.transpose(Image.Transpose.ROTATE_90).save(path, exif=exif.tobytes())
        else:
            rgb.convert(mode).save(path)
        written[name] = mode
        ids = np.random.default_rng(100 + index).integers(0, CLASSES, (HEIGHT, WIDTH))
        _write_mask(folder / "masks" / f"{Path(name).stem}.png", ids, MASK_MODES[index % 4])
    return written


def _write_mask(path: Path, ids: np.ndarray, mode: str) -> None:
    if mode == "L":
        Image.fromarray(ids.astype(np.uint8)).save(path)
    elif mode == "P":  # palette indices are the class ids; the palette shows them as colours
        mask = Image.frombytes("P", (ids.shape[1], ids.shape[0]), ids.astype(np.uint8).tobytes())
        mask.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * 756)
        mask.save(path)
    elif mode == "I;16":
        Image.fromarray(ids.astype(np.uint16)).save(path)
    else:  # "1": a two-class mask
        Image.fromarray(ids >= 2).save(path)


def write_video_folder(folder: Path) -> list[str]:
    """Four short videos, each awkward in one way; returns their names."""
    folder.mkdir(parents=True)
    _write_video(folder / "two_streams.mkv", "libx264", 64, 48, extra_stream=True)
    _write_video(folder / "odd_sides.mkv", "libvpx-vp9", 41, 35)
    _write_video(folder / "variable_rate.mp4", "libx264", 64, 48, variable_rate=True)
    _write_video(folder / "phone.mp4", "libx264", 64, 48, rotation=-90)
    return ["odd_sides.mkv", "phone.mp4", "two_streams.mkv", "variable_rate.mp4"]


def _write_video(
    path: Path,
    codec: str,
    width: int,
    height: int,
    frames: int = 24,
    *,
    extra_stream: bool = False,
    variable_rate: bool = False,
    rotation: int = 0,
) -> None:
    rng = np.random.default_rng(7)
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=10)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        if codec == "libx264":
            stream.options = {"g": "6", "bf": "2"}
        if rotation:
            stream.set_display_rotation(rotation)
        if variable_rate:  # timestamps in milliseconds, not on a rate's grid
            stream.time_base = stream.codec_context.time_base = Fraction(1, 1000)
        other = None
        if extra_stream:
            other = container.add_stream("mpeg4", rate=10)
            other.width, other.height, other.pix_fmt = 32, 32, "yuv420p"
        pts = 0
        for index in range(frames):
            image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = pts if variable_rate else index
            pts += 100 if index % 3 else 250  # 10 fps, with a longer gap every third frame
            container.mux(stream.encode(frame))
            if other is not None:
                blank = av.VideoFrame.from_ndarray(np.zeros((32, 32, 3), np.uint8), "rgb24")
                blank.pts = index
                container.mux(other.encode(blank))
        container.mux(stream.encode(None))
        if other is not None:
            container.mux(other.encode(None))
