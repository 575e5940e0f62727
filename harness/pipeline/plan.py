"""Which samples are read: the sample plan, from sample numbers to (file, frame, crop corner).

Which sample is read is decided by ``SamplePlan`` from the sample number alone (seeded), so the
sequence is reproducible and can be sharded across ranks without coordination. Training and
evaluation read disjoint data: the last eighth of every video, or the bottom crop-high band of
every image, is held out for mIoU.

The plan knows only the files' geometry (``FileInfo``); reading a planned sample is a source's
job (``harness.pipeline.sources``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from harness.errors import HarnessError

HELD_OUT_FRACTION = 8  # 1/8 of every video is held out for evaluation


@dataclass(frozen=True)
class SampleRef:
    """One sample: a file, a frame within it (videos; 0 for images) and a crop's corner."""

    file: int
    frame: int
    top: int
    left: int


@dataclass(frozen=True)
class FileInfo:
    """The geometry of one file of the dataset: all the plan needs to know of it."""

    width: int
    height: int
    frames: int  # 1 for images


class SamplePlan:
    """Maps sample numbers to SampleRefs, deterministically from the seed.

    Shuffled: every sample picks a random file (weighted by its frames), frame and crop. With a
    ``sequence_length`` L > 1, samples come in runs of L: the run picks the file and its first
    frame, its samples take consecutive frames (each with its own crop), so a decoder seeks once
    per run. In order: frames are taken one after another through the files, crops in raster
    order; consecutive frames of a video then decode without a seek, as a sequential reader would.
    """

    def __init__(
        self,
        files: list[FileInfo],
        crop: int,
        seed: int,
        shuffle: bool,
        sequence_length: int = 1,
    ) -> None:
        self.files, self.crop, self.seed, self.shuffle = files, crop, seed, shuffle
        self.sequence_length = sequence_length
        for index, info in enumerate(files):
            if min(info.width, info.height) < crop or (info.frames == 1 and info.height < 2 * crop):
                raise HarnessError(
                    f"file {index} of the dataset is {info.width}x{info.height}: too small for "
                    f"pipeline.crop {crop} (images need twice the crop in height: one band is "
                    "held out for evaluation)"
                )
        self._train_frames = np.array([self.train_range(f)[1] for f in files], dtype=np.int64)
        self._cumulative = np.cumsum(self._train_frames)

    @staticmethod
    def train_range(info: FileInfo) -> tuple[int, int]:
        """Frames used for training: all but the last eighth (videos); the image (images)."""
        if info.frames == 1:
            return 0, 1
        held_out = max(1, info.frames // HELD_OUT_FRACTION)
        return 0, info.frames - held_out

    def _train_rows(self, info: FileInfo) -> int:
        """Top rows a training crop may start at: images keep their bottom band for evaluation."""
        if info.frames == 1:
            return info.height - 2 * self.crop + 1
        return info.height - self.crop + 1

    def train(self, number: int) -> SampleRef:
        """Training sample ``number``: shuffled or in order, from the training frames and rows."""
        total = int(self._cumulative[-1])
        if self.shuffle:
            rng = np.random.default_rng([self.seed, number])
            length = self.sequence_length
            # One draw picks the run's start; with L == 1 it is the sample's own draw.
            start_rng = rng if length == 1 else np.random.default_rng([self.seed, number // length])
            position = int(start_rng.integers(total))
            file = int(np.searchsorted(self._cumulative, position, side="right"))
            frame = position - int(self._cumulative[file - 1] if file else 0)
            if length > 1:  # the run stays inside the file's training frames
                last = int(self._train_frames[file]) - 1
                frame = min(min(frame, max(0, last - length + 1)) + number % length, last)
            info = self.files[file]
            top = int(rng.integers(self._train_rows(info)))
            left = int(rng.integers(info.width - self.crop + 1))
            return SampleRef(file, frame, top, left)
        position = number % total
        file = int(np.searchsorted(self._cumulative, position, side="right"))
        frame = position - int(self._cumulative[file - 1] if file else 0)
        info = self.files[file]
        across = max(1, (info.width - self.crop) // self.crop + 1)
        down = max(1, (self._train_rows(info) - 1) // self.crop + 1)
        cell = (number // total) % (across * down)
        return SampleRef(file, frame, (cell // across) * self.crop, (cell % across) * self.crop)

    def held_out(self, number: int) -> SampleRef:
        """Evaluation samples: from the held-out frames or band, never seen in training."""
        rng = np.random.default_rng([self.seed, 0xE7A1, number])
        file = int(rng.integers(len(self.files)))
        info = self.files[file]
        left = int(rng.integers(info.width - self.crop + 1))
        if info.frames == 1:
            return SampleRef(file, 0, info.height - self.crop, left)
        first = self.train_range(info)[1]
        frame = int(rng.integers(first, info.frames))
        return SampleRef(file, frame, int(rng.integers(info.height - self.crop + 1)), left)


class RecordPlan(SamplePlan):
    """The sample plan of a records dataset (``FileInfo.frames``: a file's records): each epoch
    reads every record once, files in an order shuffled per epoch (seeded) and the records of a
    file one after another, as DLIO's readers do (``file_shuffle: seed``; a TFRecord file is read
    through its framing, record by record). Nothing is held out: there is no model to evaluate."""

    def __init__(self, files: list[FileInfo], seed: int, shuffle: bool) -> None:
        self.files, self.crop, self.seed, self.shuffle = files, 0, seed, shuffle
        self.sequence_length = 1
        self._train_frames = np.array([info.frames for info in files], dtype=np.int64)
        self._cumulative = np.cumsum(self._train_frames)
        self._epoch: tuple[int, np.ndarray, np.ndarray] | None = None  # (epoch, order, cumsum)

    @staticmethod
    def train_range(info: FileInfo) -> tuple[int, int]:
        return 0, info.frames

    def _order(self, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        """The files of ``epoch`` in reading order and the cumulative records along it."""
        if self._epoch is None or self._epoch[0] != epoch:
            count = len(self.files)
            if self.shuffle:
                order = np.random.default_rng([self.seed, 0xF11E, epoch]).permutation(count)
            else:
                order = np.arange(count)
            self._epoch = (epoch, order, np.cumsum(self._train_frames[order]))
        return self._epoch[1], self._epoch[2]

    def train(self, number: int) -> SampleRef:
        total = int(self._cumulative[-1])
        order, cumulative = self._order(number // total)
        position = number % total
        slot = int(np.searchsorted(cumulative, position, side="right"))
        record = position - int(cumulative[slot - 1] if slot else 0)
        return SampleRef(int(order[slot]), record, 0, 0)

    def held_out(self, number: int) -> SampleRef:
        raise HarnessError("a records dataset holds nothing out: there is no model to evaluate")
