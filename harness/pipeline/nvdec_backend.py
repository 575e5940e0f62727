"""The NVDEC backend: video decoded on the GPU's hardware decoders with PyNvVideoCodec.

Frames never visit the host: PyNvVideoCodec's ``SimpleDecoder`` seeks to the keyframe before a
frame, decodes forward on NVDEC and converts to interleaved RGB on the GPU; the frame is handed
to torch through DLPack (no copy) and only the crop is copied, on the GPU. A GPU has several
NVDEC engines, so ``pipeline.workers`` decoder threads run side by side, each with its own decoder
sessions (one per open video, the least recently used closed past ``MAX_OPEN``) and its own CUDA
stream. Batches are prepared ``prefetch_factor x workers`` ahead of the loop, as the DataLoader
does.

Which frames are read is decided by the same ``SamplePlan`` as the torch backend, so the two read
the same samples and differ only in where they decode. With ``pipeline.sequence_length`` L > 1 a
run of L consecutive frames is decoded in one call (one seek); each of its samples is charged an
equal share of that call's time as its fetch latency. Reads go through a counting file object,
so the bytes cross-check works as with the torch backend. Held-out evaluation after training
reads through the CPU decoder (the torch path): it is not part of the timed loop.

Before any work, every video is checked against NVDEC's codecs and size limits; a video NVDEC
cannot take stops the run with a message naming the file (exit 2), never a crash in a thread.
"""

from __future__ import annotations

import importlib
import pickle
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from harness.data.labels import derive_mask
from harness.errors import HarnessError
from harness.pipeline.loader import MAX_SKIPS
from harness.pipeline.sources import (
    CountingFile,
    DecodedVideoSource,
    PageLedger,
    Reads,
    SamplePlan,
    SampleRef,
    Source,
)

NOT_COUNTED = -1  # bytes of a sample read by the SDK's demuxer: recorded as not measured
MAX_OPEN = 16  # decoder sessions per thread: the study's 12 cameras stay open
# Read the videos through a counting Python file object (bytes cross-check per sample) rather
# than by path in the SDK's own demuxer (no per-sample bytes): benchmarks/bench_nvdec.py found no
# difference in speed on an H200 (193 vs 192 samples/s), so the bytes are counted.
COUNT_READS = True

# What NVDEC decodes on Ampere and Hopper GPUs (Video Codec SDK support matrix), as the codec
# names PyAV reports: (min width, min height, max width, max height).
NVDEC_LIMITS: dict[str, tuple[int, int, int, int]] = {
    "h264": (48, 16, 4096, 4096),
    "hevc": (144, 144, 8192, 8192),
    "vp9": (128, 128, 8192, 8192),
    "av1": (128, 128, 8192, 8192),
}


def unavailable() -> str | None:
    """Why the nvdec backend cannot be used here, or None."""
    try:
        import torch
    except ImportError as exc:
        return f"PyTorch is not installed ({exc})"
    if not torch.cuda.is_available():
        return (
            f"it decodes on an NVIDIA GPU and torch sees none (torch {torch.__version__}, "
            f"CUDA {torch.version.cuda}); use pipeline.backend torch"
        )
    try:
        importlib.import_module("PyNvVideoCodec")
    except ImportError as exc:
        return f"PyNvVideoCodec is not installed ({exc}); pip install pynvvideocodec"
    except Exception as exc:  # its import probes the driver and raises RuntimeError on failure
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return f"PyNvVideoCodec cannot start: {first_line}"
    return None


def check_scenario(source: Source, use_cuda: bool) -> None:
    """Refuse, before any work, what this backend cannot do; a video NVDEC cannot decode is
    named in the message."""
    if not use_cuda:
        raise HarnessError(
            "backend nvdec keeps frames on the GPU: it needs training.device cuda (or auto)"
        )
    if not isinstance(source, DecodedVideoSource):
        raise HarnessError(
            "backend nvdec decodes video: it needs dataset.kind video and pipeline.mode decoded"
        )
    for record in source.records:
        path = source.root / record["path"]
        codec = str(record.get("codec", "")).lower()
        limits = NVDEC_LIMITS.get(codec)
        if limits is None:
            raise HarnessError(
                f"{path}: NVDEC cannot decode {codec or 'this'} video (it decodes "
                f"{', '.join(NVDEC_LIMITS)}); use pipeline.backend torch for this dataset"
            )
        min_w, min_h, max_w, max_h = limits
        width, height = int(record["width"]), int(record["height"])
        if not (min_w <= width <= max_w and min_h <= height <= max_h):
            raise HarnessError(
                f"{path}: {width}x{height} is outside NVDEC's {codec} limits "
                f"({min_w}x{min_h} to {max_w}x{max_h}); use pipeline.backend torch for this dataset"
            )


class _SharedLedger(PageLedger):
    """One page ledger for all decoder threads: a page is asked for the first time once."""

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()

    def note(self, path: str, pages: np.ndarray, file_size: int) -> int:
        with self._lock:
            return super().note(path, pages, file_size)


@dataclass
class _OpenDecoder:
    decoder: Any
    handle: CountingFile | None  # None: the SDK reads the file itself, bytes not counted


class _DecoderThread:
    """What one decoder thread owns: its decoder sessions, CUDA stream and copy of the source
    (mask readers and track tables are per thread, as they are per worker in the torch path)."""

    def __init__(self, source: DecodedVideoSource, ledger: PageLedger, device: Any) -> None:
        import torch

        self.source: DecodedVideoSource = pickle.loads(pickle.dumps(source))
        self.ledger, self.device = ledger, device
        self.stream = torch.cuda.Stream(device)
        self.open: OrderedDict[int, _OpenDecoder] = OrderedDict()

    def decoder(self, file: int) -> _OpenDecoder:
        opened = self.open.get(file)
        if opened is None:
            opened = self.open[file] = self._open(file)
            while len(self.open) > MAX_OPEN:
                handle = self.open.popitem(last=False)[1].handle
                if handle is not None:
                    handle.close()
        self.open.move_to_end(file)
        return opened

    def _open(self, file: int) -> _OpenDecoder:
        nvc = importlib.import_module("PyNvVideoCodec")
        path = self.source.root / self.source.records[file]["path"]
        handle = CountingFile(path, self.ledger) if COUNT_READS else None
        try:
            decoder = nvc.SimpleDecoder(
                str(path) if handle is None else handle,
                gpu_id=self.device.index or 0,
                use_device_memory=True,
                output_color_type=nvc.OutputColorType.RGB,
            )
        except Exception as exc:  # the SDK raises plain exceptions for unsupported streams
            if handle is not None:
                handle.close()
            raise HarnessError(f"NVDEC cannot open this video: {_one_line(exc)}") from None
        return _OpenDecoder(decoder, handle)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:300] or type(exc).__name__


def _frames_as_tensors(frames: list[Any], height: int, width: int) -> list[Any]:
    """Decoded RGB frames as HxWx3 uint8 CUDA tensors, sharing the decoder's memory (DLPack)."""
    import torch

    tensors = []
    for frame in frames:
        tensor = torch.from_dlpack(frame)
        if tensor.shape != (height, width, 3):
            tensor = tensor.reshape(height, width, 3)
        tensors.append(tensor)
    return tensors


class NvdecBatches:
    """Training batches decoded on NVDEC, in the loop's batch format, all tensors on the GPU."""

    def __init__(
        self,
        source: DecodedVideoSource,
        plan: SamplePlan,
        *,
        batch_size: int,
        crop: int,
        workers: int,
        prefetch_factor: int,
        rank: int,
        world: int,
        steps: int | None,
        device: Any,
        on_corrupt: str,
    ) -> None:
        self.source, self.plan, self.batch_size, self.crop = source, plan, batch_size, crop
        self.decoders = max(1, workers)
        self.depth = max(1, prefetch_factor * self.decoders)
        self.rank, self.world, self.steps = rank, world, steps
        self.device, self.on_corrupt = device, on_corrupt
        self.ledger = _SharedLedger()
        self._local = threading.local()

    # --- in the decoder threads --------------------------------------------------------------

    def _thread(self) -> _DecoderThread:
        state = getattr(self._local, "state", None)
        if state is None:
            state = self._local.state = _DecoderThread(self.source, self.ledger, self.device)
        return state

    def _decode(self, state: _DecoderThread, refs: list[SampleRef]) -> tuple[list[Any], Any]:
        """Frames (CUDA, HxWx3) of refs that all share one file, and the reads it took."""
        file = refs[0].file
        opened = state.decoder(file)
        info = self.source.files[file]
        indices = [ref.frame for ref in refs]
        try:
            frames = opened.decoder.get_batch_frames_by_index(indices)
        except Exception as exc:
            message = f"NVDEC failed to decode frames {indices}: {_one_line(exc)}"
            raise HarnessError(message) from None
        if len(frames) != len(set(indices)):
            raise HarnessError(
                f"frames {indices} asked, {len(frames)} decoded (the video is shorter than its "
                "manifest says)"
            )
        by_index = dict(zip(dict.fromkeys(indices), frames, strict=True))
        tensors = _frames_as_tensors([by_index[i] for i in indices], info.height, info.width)
        if opened.handle is None:
            return tensors, Reads(NOT_COUNTED, NOT_COUNTED)
        reads, opened.handle.reads = opened.handle.reads, Reads()
        return tensors, reads

    def _clip(self, numbers: list[int]) -> list[dict[str, Any]]:
        """Samples of one run of consecutive frames (or one sample), decoded in one call; a
        failed decode is retried sample by sample with replacements under ``on_corrupt: skip``."""
        import torch

        state = self._thread()
        started = time.monotonic_ns()
        refs = [self.plan.train(number) for number in numbers]
        with torch.cuda.stream(state.stream):
            try:
                samples = self._crops(state, refs)
            except (HarnessError, OSError, ValueError) as exc:
                samples = [self._replacement(state, number, exc) for number in numbers]
            state.stream.synchronize()  # crops are complete before the decoder reuses surfaces
        ended = time.monotonic_ns()
        share = (ended - started) // max(1, len(samples))
        for sample in samples:
            sample["latency_ns"], sample["end_ns"] = share, ended
        return samples

    def _crops(self, state: _DecoderThread, refs: list[SampleRef]) -> list[dict[str, Any]]:
        import torch

        tensors, reads = self._decode(state, refs)
        crop, source = self.crop, state.source
        samples = []
        for position, (ref, frame) in enumerate(zip(refs, tensors, strict=True)):
            rows, cols = slice(ref.top, ref.top + crop), slice(ref.left, ref.left + crop)
            image = frame[rows, cols].permute(2, 0, 1).contiguous()
            record = source.records[ref.file]
            if "tracks" in record or "mask" in record:
                mask = source.mask(ref.file, ref.frame, np.empty(0))[rows, cols]
            else:  # labels derived from pixel values: the crop's pixels come to the host
                rgb = image.permute(1, 2, 0).cpu().numpy()
                mask = derive_mask(rgb, source.labels.removeprefix("derived:"), source.classes)
            samples.append(
                {
                    "image": image,
                    "mask": torch.from_numpy(np.ascontiguousarray(mask)).to(self.device),
                    # the call read its bytes once: they are the first sample's
                    "requested": reads.requested if position == 0 else min(reads.requested, 0),
                    "first_time": reads.first_time if position == 0 else min(reads.first_time, 0),
                    "errors": [],
                    "fatal": None,
                }
            )
        return samples

    def _replacement(self, state: _DecoderThread, number: int, failure: Exception) -> dict:
        errors = [(self.source.describe(self.plan.train(number)), _one_line(failure))]
        if self.on_corrupt == "fail":
            return self._failed(errors)
        for attempt in range(1, MAX_SKIPS):
            ref = self.plan.train(number + attempt * 2**40)
            try:
                sample = self._crops(state, [ref])[0]
            except (HarnessError, OSError, ValueError) as exc:
                errors.append((self.source.describe(ref), _one_line(exc)))
                continue
            sample["errors"] = errors
            return sample
        return self._failed(errors)

    def _failed(self, errors: list[tuple[str, str]]) -> dict[str, Any]:
        import torch

        crop = self.crop
        return {
            "image": torch.zeros(3, crop, crop, dtype=torch.uint8, device=self.device),
            "mask": torch.zeros(crop, crop, dtype=torch.uint8, device=self.device),
            "requested": 0,
            "first_time": 0,
            "errors": errors,
            "fatal": errors[-1],
        }

    # --- in the training loop's thread -------------------------------------------------------

    def _submit(self, pool: ThreadPoolExecutor, step: int) -> list[Future]:
        first = (step * self.world + self.rank) * self.batch_size
        numbers = list(range(first, first + self.batch_size))
        length = self.plan.sequence_length if self.plan.shuffle else 1
        runs: OrderedDict[int, list[int]] = OrderedDict()
        for number in numbers:
            runs.setdefault(number // length, []).append(number)
        return [pool.submit(self._clip, run) for run in runs.values()]

    def __iter__(self) -> Iterator[dict[str, Any]]:
        import torch

        pool = ThreadPoolExecutor(self.decoders, thread_name_prefix="nvdec")
        pending: deque[list[Future]] = deque()
        submitted = produced = 0
        try:
            while self.steps is None or produced < self.steps:
                while len(pending) < self.depth and (self.steps is None or submitted < self.steps):
                    pending.append(self._submit(pool, submitted))
                    submitted += 1
                samples = [s for future in pending.popleft() for s in _result(future)]
                consumer = torch.cuda.current_stream(self.device)
                for sample in samples:  # made on decoder streams, read on the loop's stream:
                    sample["image"].record_stream(consumer)  # not reused before it is read
                    sample["mask"].record_stream(consumer)
                produced += 1
                yield {
                    "image": torch.stack([s["image"] for s in samples]),
                    "mask": torch.stack([s["mask"] for s in samples]),
                    "latency_ns": torch.tensor([s["latency_ns"] for s in samples]),
                    "end_ns": torch.tensor([s["end_ns"] for s in samples]),
                    "requested": torch.tensor([s["requested"] for s in samples]),
                    "first_time": torch.tensor([s["first_time"] for s in samples]),
                    "errors": [e for s in samples for e in s["errors"]],
                    "fatal": next((s["fatal"] for s in samples if s["fatal"] is not None), None),
                }
        finally:
            for futures in pending:
                for future in futures:
                    future.cancel()
            pool.shutdown(wait=True, cancel_futures=True)


def _result(future: Future) -> list[dict[str, Any]]:
    """A decoder thread's samples; its unexpected failure reaches the loop as one line."""
    try:
        return future.result()
    except (HarnessError, RuntimeError):
        raise
    except Exception as exc:
        what = f"{type(exc).__name__}: {_one_line(exc)}"
        raise RuntimeError(f"nvdec decoder thread: {what}") from None
