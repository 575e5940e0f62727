"""The PyTorch DataLoader backend's loader: worker processes, pinned memory on CUDA, prefetch
(its registry entry, ``torch_backend``, imports it only when batches are asked for).

Each sample is timed inside the worker (read + decode + crop: the fetch latency) and carries the
bytes it asked the storage for, so that latency and the bytes cross-check need no side channel:
they travel with the batch. Failures travel the same way: a corrupt file becomes an entry in the
batch's ``errors`` (policy ``skip``: another sample is read instead) or its ``fatal`` (policy
``fail``: the loop stops and names the file), never a traceback from deep inside a worker.
"""

from __future__ import annotations

import functools
import os
import signal
import sys
import time
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from harness.errors import HarnessError, one_line
from harness.lifeline import DATA_WORKER_NAME, die_with_parent, name_this_process
from harness.pipeline import BatchRequest
from harness.pipeline.accounting import FetchLog
from harness.pipeline.batch import (
    Batch,
    FileError,
    Sample,
    is_placeholder_array,
    placeholder_arrays,
    placeholder_pixels,
    sample_failure,
)
from harness.pipeline.plan import SamplePlan, SampleRef
from harness.pipeline.prefetch import BackgroundBatches
from harness.pipeline.preprocess import PreprocessEmulation
from harness.pipeline.readahead import ReadAhead
from harness.pipeline.sources import Source

MAX_SKIPS = 16  # replacement samples tried for one corrupt sample before giving up


class SegmentationSamples(Dataset):
    """Sample number -> one (image, mask) crop with its fetch latency and bytes requested."""

    def __init__(
        self,
        source: Source,
        plan: SamplePlan,
        crop: int,
        on_corrupt: str,
        held_out: bool = False,
        read_threads: int = 1,
        fetch_log: FetchLog | None = None,
        preprocess: PreprocessEmulation | None = None,
    ) -> None:
        self.source, self.plan, self.crop = source, plan, crop
        self.preprocess = preprocess  # emulated: read, then wait instead of decoding
        self.on_corrupt, self.held_out = on_corrupt, held_out
        self.read_threads = read_threads
        self.fetch_log = fetch_log  # every sample fetched is noted: the loop may never take it

    def __len__(self) -> int:
        return 2**62  # samples are numbered, not enumerated: the sampler decides how many

    def _ref(self, key: int) -> SampleRef:
        return self.plan.held_out(key) if self.held_out else self.plan.train(key)

    def __getitems__(self, numbers: list[int]) -> list[Sample]:
        """A batch's samples (the DataLoader's call): with ``read_threads`` > 1 the files they
        read whole are read ahead by this process's I/O threads (``pipeline.readahead``)."""
        if self.read_threads <= 1:
            return [self[number] for number in numbers]
        if self.source.read_ahead is None:
            self.source.read_ahead = ReadAhead(self.read_threads)
        ahead = self.source.read_ahead
        refs = [self._ref(number) for number in numbers]
        ahead.submit([path for ref in refs for path in self.source.whole_files(ref)])
        try:
            return [self._sample(number, ref) for number, ref in zip(numbers, refs, strict=True)]
        finally:
            ahead.forget()

    def __getitem__(self, number: int) -> Sample:
        return self._sample(number)

    def _sample(self, number: int, planned: SampleRef | None = None) -> Sample:
        """Sample ``number`` (``planned``: its place, when the caller already asked the plan),
        noted in the fetch log."""
        sample = self._fetch(number, planned)
        if self.fetch_log is not None:
            self.fetch_log.note(sample.end_ns, sample.requested_bytes, sample.first_time_bytes)
        return sample

    def _fetch(self, number: int, planned: SampleRef | None) -> Sample:
        started = time.monotonic_ns()
        errors: list[FileError] = []
        ahead = self.source.read_ahead
        for attempt in range(MAX_SKIPS):
            # A replacement sample is another deterministic number, far from the sequence.
            if attempt == 0 and planned is not None:
                ref = planned
            else:
                ref = self._ref(number if attempt == 0 else number + attempt * 2**40)
            if ahead is not None:
                ahead.earliest_taken = None
            try:
                if self.preprocess is None:
                    image, mask, reads = self.source.load(ref, self.crop)
                    self._check_shapes(ref, image, mask)
                else:
                    reads = self.source.read(ref, self.crop)
                    self.preprocess.wait()
                    image, mask = placeholder_arrays(self.crop)
            except Exception as exc:  # any failure of one sample: one line, never a traceback
                frame = ref.frame if self.source.files[ref.file].frames > 1 else None
                errors.append(sample_failure(self.source.describe(ref), frame, exc))
                if self.on_corrupt == "fail":
                    return self._failed(errors, started)
                continue
            ended = time.monotonic_ns()
            if ahead is not None and ahead.earliest_taken is not None:
                started = min(started, ahead.earliest_taken)  # its reads began before it did
            pixels, labels = (
                (placeholder_pixels(3, *mask.shape), placeholder_pixels(*mask.shape))
                if is_placeholder_array(image)
                else (torch.from_numpy(image).permute(2, 0, 1), torch.from_numpy(mask))
            )
            return Sample(
                image=pixels,
                mask=labels,
                end_ns=ended,
                latency_ns=ended - started,
                requested_bytes=reads.requested,
                first_time_bytes=reads.first_time,
                errors=errors,
            )
        return self._failed(errors, started)

    def _check_shapes(self, ref: SampleRef, image: np.ndarray, mask: np.ndarray) -> None:
        """Samples are stacked into a batch: a source's wrong shape is named here, with its file,
        not later by ``torch.stack`` without one."""
        crop = self.crop
        if image.shape != (crop, crop, 3) or mask.shape != (crop, crop) or image.dtype != np.uint8:
            raise HarnessError(
                f"{self.source.describe(ref)}: read as image {image.dtype} {image.shape} and mask "
                f"{mask.shape}, expected uint8 ({crop}, {crop}, 3) and ({crop}, {crop})"
            )

    def _failed(self, errors: list[FileError], started: int) -> Sample:
        crop, ended = self.crop, time.monotonic_ns()
        return Sample(
            image=torch.zeros(3, crop, crop, dtype=torch.uint8),
            mask=torch.zeros(crop, crop, dtype=torch.uint8),
            end_ns=ended,
            latency_ns=ended - started,
            requested_bytes=0,
            first_time_bytes=0,
            errors=errors,
            fatal=errors[-1],
        )


class RankSampler(Sampler[int]):
    """Sample numbers of one rank: step s, rank r, position i -> (s * world + r) * batch + i.

    Ranks read disjoint samples without talking to each other; ``steps=None`` runs until the
    loop stops (duration-bound runs)."""

    def __init__(self, rank: int, world: int, batch: int, steps: int | None) -> None:
        self.rank, self.world, self.batch, self.steps = rank, world, batch, steps

    def __iter__(self) -> Iterator[int]:
        step = 0
        while self.steps is None or step < self.steps:
            first = (step * self.world + self.rank) * self.batch
            yield from range(first, first + self.batch)
            step += 1

    def __len__(self) -> int:
        if self.steps is None:
            raise TypeError("a duration-bound sampler has no length")
        return self.steps * self.batch


def _worker_init(_worker_id: int, parent: int) -> None:
    # A worker whose process dies (a killed rank) would outlive it: its queue's feeder thread,
    # blocked writing a batch into a pipe that its sibling workers still hold open, keeps it from
    # exiting. Dying with the parent ends it (and what it reads from the storage) at once.
    die_with_parent(parent)
    name_this_process(DATA_WORKER_NAME)  # its CPU is the data pipeline's (pipeline_cpu_pct)
    # One compute thread per worker: workers decode, the main process trains.
    torch.set_num_threads(1)
    # The main process owns interruption: it shuts the workers down and keeps the results.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    # multiprocessing's handle-sharing thread reports a connection the main process dropped
    # (it was interrupted mid-batch) through sys.excepthook: one line, not a traceback.
    sys.excepthook = _one_line_excepthook


def _one_line_excepthook(kind: type[BaseException], value: BaseException, _tb: Any) -> None:
    print(f"data worker {os.getpid()}: {kind.__name__}: {one_line(value)}", file=sys.stderr)


def build_loader(
    dataset: SegmentationSamples,
    sampler: RankSampler,
    *,
    batch_size: int,
    workers: int,
    prefetch_factor: int,
    pin_memory: bool,
) -> DataLoader:
    options: dict[str, Any] = {}
    if workers > 0:
        options.update(
            prefetch_factor=prefetch_factor,
            worker_init_fn=functools.partial(_worker_init, parent=os.getpid()),
            multiprocessing_context="fork" if os.name == "posix" else None,
        )
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=workers,
        collate_fn=Batch.collate,
        pin_memory=pin_memory,
        **options,
    )


def loader_batches(request: BatchRequest) -> BackgroundBatches:
    """The DataLoader's batches, received by a thread of the training process (see prefetch)."""
    sampler = RankSampler(request.rank, request.world, request.batch_size, request.steps)
    dataset = SegmentationSamples(
        request.source,
        request.plan,
        request.crop,
        request.on_corrupt,
        read_threads=request.read_threads,
        fetch_log=request.fetch_log,
        preprocess=request.preprocess,
    )
    if request.preprocess is not None:
        request.preprocess.slots.open()  # here, so that the forked workers inherit it
        # Emulated workers mostly sleep in their slots: more of them than this machine's cores
        # is the point (the emulated client's), not the slowness torch warns of.
        warnings.filterwarnings("ignore", message="This DataLoader will create")
    loader = build_loader(
        dataset,
        sampler,
        batch_size=request.batch_size,
        workers=request.workers,
        prefetch_factor=request.prefetch_factor,
        pin_memory=request.device.type == "cuda",
    )
    return BackgroundBatches(loader)
