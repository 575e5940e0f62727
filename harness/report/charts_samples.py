"""The report's pictures of what the model saw and learnt (the study's Figures 4-6): per run, a
strip of its held-out samples (input, true mask, the model's prediction), and a collage image
whole with its mask.

The pictures are the thumbnails the run kept (``harness.train.samples``), read from its folder;
masks are drawn from their class numbers with :func:`harness.train.samples.class_colour`, so a
class has one colour in every picture of the report, and each figure carries the legend.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Patch, Rectangle

from harness.report.charts import INK, not_available, plain, titled_figure
from harness.report.runs import Run
from harness.train.samples import class_colour, palette

PANEL_IN = 0.85  # one picture of a strip, square, in inches (12 across the page's width)
STRIP_COLUMNS = 4  # samples side by side in a strip (each: input, truth, prediction)


def read_picture(run: Run, name: str | None) -> np.ndarray | None:
    """A kept picture as an array: RGB (H, W, 3) for an input, class numbers (H, W) for a
    mask; None when the run folder does not hold it."""
    from PIL import Image

    path = run.source.picture(name) if name else None
    if path is None:
        return None
    with Image.open(path) as picture:
        if picture.mode == "P":  # a mask: the values are class numbers, whatever its palette
            return np.asarray(picture)
        return np.asarray(picture.convert("RGB"))


def coloured(mask: np.ndarray) -> np.ndarray:
    """Class numbers as RGB in the report's class colours."""
    return palette(256)[mask]


def class_legend(target: Any, entry: dict[str, Any], shown: set[int], **options: Any) -> None:
    """The classes that appear in the figure's masks, each with its colour."""
    names = list(entry.get("class_names") or [])
    handles = [
        Patch(
            facecolor=class_colour(k),
            edgecolor="#999999",
            label=plain(names[k] if k < len(names) else f"class {k}"),
        )
        for k in sorted(shown)
    ]
    if handles:
        target.legend(handles=handles, fontsize=8, title="classes", **options)


def _picture_axes(ax: Any, title: str) -> None:
    ax.set_xticks([])
    ax.set_yticks([])
    ax.grid(False)
    for spine in ax.spines.values():
        spine.set_visible(True)
        spine.set_color("#bbbbbb")
    ax.set_title(plain(title), fontsize=7.5, color=INK, loc="left")


def held_out_strip(run: Run) -> Figure:
    """The run's held-out samples: for each, the input, the true mask and the prediction (a
    panel saying why there is none in an emulated run)."""
    entry = run.source.thumbnails or {}
    samples = list(entry.get("samples") or [])
    rows = max(1, -(-len(samples) // STRIP_COLUMNS))
    figure = titled_figure(f"Held-out samples: {plain(run.label)}", 0.85 + rows * (PANEL_IN + 0.55))
    # a row of subfigures per STRIP_COLUMNS samples, and a thin one at the bottom for the legend
    grid = figure.subfigures(rows + 1, 1, squeeze=False, height_ratios=[1.0] * rows + [0.22])
    bands = grid[:, 0]
    outer = [band.subfigures(1, STRIP_COLUMNS, wspace=0.03) for band in bands[:rows]]
    shown: set[int] = set()
    for index, sub in enumerate(np.ravel(outer)):
        if index >= len(samples):
            continue
        sample = samples[index]
        accuracy = sample.get("pixel_accuracy")
        heading = f"sample {int(sample.get('number', index)) + 1}"
        if accuracy is not None:
            heading += f" · {accuracy * 100:.0f} % of pixels right"
        sub.suptitle(heading, x=0.02, ha="left", fontsize=8, color=INK, fontweight="bold")
        axes = sub.subplots(1, 3)
        image = read_picture(run, sample.get("input"))
        truth = read_picture(run, sample.get("truth"))
        guess = read_picture(run, sample.get("prediction"))
        for ax, title in zip(axes, ("input", "truth", "prediction"), strict=True):
            _picture_axes(ax, title)
        if image is not None:
            axes[0].imshow(image, interpolation="none")
        else:
            not_available(axes[0], "missing", wrap=14)
        for ax, mask, what in ((axes[1], truth, "truth"), (axes[2], guess, "prediction")):
            if mask is None:  # the caption says why
                not_available(ax, f"no {what}", wrap=10)
                ax.set_box_aspect(1)
                continue
            ax.imshow(coloured(mask), interpolation="none")
            shown.update(int(k) for k in np.unique(mask))
    class_legend(
        bands[-1], entry, shown, loc="center left", ncols=max(1, len(shown)), title_fontsize=8
    )
    return figure


def collage_overview(run: Run) -> Figure:
    """The collage image the first held-out sample was cut from, downscaled, beside its mask;
    the held-out band (never trained on) and the kept crops outlined (the study's Figure 4)."""
    entry = run.source.thumbnails or {}
    collage = entry.get("collage") or {}
    image = read_picture(run, collage.get("image"))
    mask = read_picture(run, collage.get("mask"))
    width, height = int(collage.get("width") or 1), int(collage.get("height") or 1)
    panel_h = 2.3
    panel_w = min(4.8, panel_h * width / height)
    figure = titled_figure(
        f"A collage image and its segmentation: {plain(collage.get('where', ''))}",
        0.95 + panel_h,
        max(7.0, 2 * panel_w + 1.2),
    )
    axes = figure.subplots(1, 2)
    shown: set[int] = set()
    crop = int(entry.get("crop") or 0)
    for ax, picture, title in (
        (axes[0], image, f"image ({width}×{height} px, shown downscaled)"),
        (axes[1], mask, "segmentation mask (the truth)"),
    ):
        _picture_axes(ax, title)
        if picture is None:
            not_available(ax, "not kept", wrap=20)
            continue
        if picture.ndim == 2:
            shown.update(int(k) for k in np.unique(picture))
            picture = coloured(picture)
        scale = picture.shape[1] / width
        ax.imshow(picture, interpolation="none")
        top = collage.get("held_out_top")
        if isinstance(top, int):
            ax.add_patch(
                Rectangle(
                    (-0.5, top * scale - 0.5),
                    picture.shape[1],
                    (height - top) * scale,
                    fill=False,
                    edgecolor="white",
                    linestyle=(0, (4, 3)),
                    lw=1.2,
                )
            )
        for sample in entry.get("samples") or []:
            if sample.get("file") != collage.get("file"):
                continue
            ax.add_patch(
                Rectangle(
                    (sample["left"] * scale - 0.5, sample["top"] * scale - 0.5),
                    crop * scale,
                    crop * scale,
                    fill=False,
                    edgecolor="#ff2d2d",
                    lw=1.2,
                )
            )
            ax.annotate(
                str(int(sample["number"]) + 1),
                (sample["left"] * scale, sample["top"] * scale),
                xytext=(1, -1),
                textcoords="offset points",
                color="#ff2d2d",
                fontsize=7,
                fontweight="bold",
                va="bottom",
            )
    class_legend(axes[1], entry, shown, loc="upper left", bbox_to_anchor=(1.03, 1.0))
    return figure
