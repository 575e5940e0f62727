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
import os
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
from harness.errors import HarnessError, one_line
from harness.pipeline import BatchRequest
from harness.pipeline.accounting import CountingFile, PageLedger, Reads
from harness.pipeline.batch import NOT_MEASURED, Batch, FileError, Sample
from harness.pipeline.codecs import check_nvdec_limits, refuse_awkward_video
from harness.pipeline.plan import SampleRef
from harness.pipeline.sources import DecodedVideoSource, Source
from harness.pipeline.torch_loader import MAX_SKIPS
from harness.scenario import Scenario

MAX_OPEN = 16  # decoder sessions per thread: the study's 12 cameras stay open
# Read the videos through a counting Python file object (bytes cross-check per sample) rather
# than by path in the SDK's own demuxer (no per-sample bytes): benchmarks/bench_nvdec.py found no
# difference in speed on an H200 (193 vs 192 samples/s), so the bytes are counted. The benchmark
# sets this variable to 1 to compare with the SDK's reads.
SDK_READS_ENV = "HARNESS_NVDEC_SDK_READS"


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


def ignored_settings(scenario: Scenario) -> dict[str, str]:
    """The backend settings it does not act on, each with why: its decoders are NVDEC sessions
    that read the video themselves."""
    return {
        "decoder_threads": "NVDEC decodes in hardware; its decoders are pipeline.workers",
        "read_threads": "its decoders read the video themselves",
    }


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
    refuse_awkward_video(source, "nvdec")
    check_nvdec_limits(source)


class _SharedLedger(PageLedger):
    """One page ledger for all decoder threads: a page is asked for the first time once."""

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()

    def note(
        self, path: str, pages: np.ndarray, file_size: int, absent: np.ndarray | None = None
    ) -> int:
        with self._lock:
            return super().note(path, pages, file_size, absent)


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
        handle = None if os.environ.get(SDK_READS_ENV) == "1" else CountingFile(path, self.ledger)
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
            raise HarnessError(f"NVDEC cannot open this video: {one_line(exc, 300)}") from None
        return _OpenDecoder(decoder, handle)


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

    def __init__(self, request: BatchRequest) -> None:
        self.source: DecodedVideoSource = request.source  # type: ignore[assignment]
        self.plan, self.batch_size, self.crop = request.plan, request.batch_size, request.crop
        self.decoders = max(1, request.workers)
        self.depth = max(1, request.prefetch_factor * self.decoders)
        self.rank, self.world, self.steps = request.rank, request.world, request.steps
        self.device, self.on_corrupt = request.device, request.on_corrupt
        # the host's ledger (thread-safe) when the run shares one, else the threads' own
        self.ledger = self.source.ledger if self.source.ledger_path else _SharedLedger()
        self._local = threading.local()

    # --- in the decoder threads --------------------------------------------------------------

    def _thread(self) -> _DecoderThread:
        state = getattr(self._local, "state", None)
        if state is None:
            state = self._local.state = _DecoderThread(self.source, self.ledger, self.device)
        return state

    def _decode(
        self, state: _DecoderThread, refs: list[SampleRef]
    ) -> tuple[list[Any], Reads | None]:
        """Frames (CUDA, HxWx3) of refs that all share one file, and the reads it took (None:
        not counted)."""
        file = refs[0].file
        opened = state.decoder(file)
        info = self.source.files[file]
        indices = [ref.frame for ref in refs]
        try:
            frames = opened.decoder.get_batch_frames_by_index(indices)
        except Exception as exc:
            message = f"NVDEC failed to decode frames {indices}: {one_line(exc, 300)}"
            raise HarnessError(message) from None
        if len(frames) != len(set(indices)):
            raise HarnessError(
                f"frames {indices} asked, {len(frames)} decoded (the video is shorter than its "
                "manifest says)"
            )
        by_index = dict(zip(dict.fromkeys(indices), frames, strict=True))
        tensors = _frames_as_tensors([by_index[i] for i in indices], info.height, info.width)
        if opened.handle is None:
            return tensors, None  # the SDK's demuxer read them: not counted
        reads, opened.handle.reads = opened.handle.reads, Reads()
        return tensors, reads

    def _clip(self, numbers: list[int]) -> list[Sample]:
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
            sample.latency_ns, sample.end_ns = share, ended
        return samples

    def _crops(self, state: _DecoderThread, refs: list[SampleRef]) -> list[Sample]:
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
            # The call read its bytes once: they are the first sample's.
            requested, first_time = (
                (NOT_MEASURED, NOT_MEASURED)
                if reads is None
                else (reads.requested, reads.first_time)
                if position == 0
                else (0, 0)
            )
            samples.append(
                Sample(
                    image=image,
                    mask=torch.from_numpy(np.ascontiguousarray(mask)).to(self.device),
                    end_ns=0,  # set with the latency, when the whole call is done
                    requested_bytes=requested,
                    first_time_bytes=first_time,
                )
            )
        return samples

    def _replacement(self, state: _DecoderThread, number: int, failure: Exception) -> Sample:
        errors = [(self.source.describe(self.plan.train(number)), one_line(failure, 300))]
        if self.on_corrupt == "fail":
            return self._failed(errors)
        for attempt in range(1, MAX_SKIPS):
            ref = self.plan.train(number + attempt * 2**40)
            try:
                sample = self._crops(state, [ref])[0]
            except (HarnessError, OSError, ValueError) as exc:
                errors.append((self.source.describe(ref), one_line(exc, 300)))
                continue
            sample.errors = errors
            return sample
        return self._failed(errors)

    def _failed(self, errors: list[FileError]) -> Sample:
        import torch

        crop = self.crop
        return Sample(
            image=torch.zeros(3, crop, crop, dtype=torch.uint8, device=self.device),
            mask=torch.zeros(crop, crop, dtype=torch.uint8, device=self.device),
            end_ns=0,
            requested_bytes=0,
            first_time_bytes=0,
            errors=errors,
            fatal=errors[-1],
        )

    # --- in the training loop's thread -------------------------------------------------------

    def _submit(self, pool: ThreadPoolExecutor, step: int) -> list[Future]:
        first = (step * self.world + self.rank) * self.batch_size
        numbers = list(range(first, first + self.batch_size))
        length = self.plan.sequence_length if self.plan.shuffle else 1
        runs: OrderedDict[int, list[int]] = OrderedDict()
        for number in numbers:
            runs.setdefault(number // length, []).append(number)
        return [pool.submit(self._clip, run) for run in runs.values()]

    def __iter__(self) -> Iterator[Batch]:
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
                    sample.image.record_stream(consumer)  # not reused before it is read
                    sample.mask.record_stream(consumer)
                produced += 1
                yield Batch.collate(samples)
        finally:
            for futures in pending:
                for future in futures:
                    future.cancel()
            pool.shutdown(wait=True, cancel_futures=True)


def _result(future: Future) -> list[Sample]:
    """A decoder thread's samples; its unexpected failure reaches the loop as one line."""
    try:
        return future.result()
    except (HarnessError, RuntimeError):
        raise
    except Exception as exc:
        what = f"{type(exc).__name__}: {one_line(exc, 300)}"
        raise RuntimeError(f"nvdec decoder thread: {what}") from None


def batches(request: BatchRequest) -> NvdecBatches:
    """The registry's entry (``check_scenario`` has made sure the source is decoded video)."""
    return NvdecBatches(request)
