"""The contract between every backend and the training loop: a ``Batch`` of crops.

A backend yields ``Batch`` objects; the loop (real or emulated) consumes them. Per sample it
carries when it was ready, how long it took to fetch (read + decode + crop, timed where it was
made) and the bytes it asked the storage for (all of them, and those asked for the first time).
A backend that cannot time or count single samples (DALI, the SDK demuxer of nvdec) sends NaN:
"not measured", never zero. Failures travel in the batch too (``errors``; ``fatal`` under
``on_corrupt: fail``), so that the loop, not a worker's traceback, reports them.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch

NOT_MEASURED = float("nan")
FileError = tuple[str, str]  # (file, one-line message)

# Below this many pixel bytes, a batch leaving a DataLoader worker travels inside its pickle
# rather than in shared memory: a shared-memory tensor costs a file-descriptor handover (a socket
# connection and an authentication handshake, per tensor) that small batches pay many times over
# in copying, while large batches copy more than the handover costs (docs/emulation.md).
INLINE_PIXEL_BYTES = 1 << 20


def placeholder_pixels(*shape: int) -> torch.Tensor:
    """uint8 zeros of ``shape`` that hold one byte: a zero-stride view, never written to. The
    emulated pipelines (emulated preprocessing, MLPerf records) hand these on instead of pixels:
    stacked, pickled and received as a shape, they cost the client no copy at any crop size."""
    return torch.zeros(1, dtype=torch.uint8).expand(*shape)


def is_placeholder(pixels: torch.Tensor) -> bool:
    return pixels.numel() > 1 and not any(pixels.stride())


_PLACEHOLDERS: dict[int, tuple[np.ndarray, np.ndarray]] = {}


def placeholder_arrays(crop: int) -> tuple[np.ndarray, np.ndarray]:
    """A sample's (image HWC, mask HW) of zeros, as a source's ``load`` returns one, shared
    (never written to): the backend turns them into ``placeholder_pixels``."""
    found = _PLACEHOLDERS.get(crop)
    if found is None:
        found = _PLACEHOLDERS[crop] = (
            np.zeros((crop, crop, 3), dtype=np.uint8),
            np.zeros((crop, crop), dtype=np.uint8),
        )
    return found


def is_placeholder_array(image: np.ndarray) -> bool:
    """Whether ``image`` is one of ``placeholder_arrays``'s images."""
    found = _PLACEHOLDERS.get(image.shape[0]) if image.ndim == 3 else None
    return found is not None and found[0] is image


@dataclass(frozen=True)
class _PlaceholderState:
    """A placeholder tensor as a batch pickles it: its shape."""

    shape: tuple[int, ...]


@dataclass
class Sample:
    """One crop as a DataLoader worker returns it (HWC image turned CHW, HW mask)."""

    image: torch.Tensor  # uint8, (3, crop, crop)
    mask: torch.Tensor  # uint8, (crop, crop)
    end_ns: int  # time.monotonic_ns() when the sample was ready
    latency_ns: float = NOT_MEASURED
    requested_bytes: float = NOT_MEASURED
    first_time_bytes: float = NOT_MEASURED
    errors: list[FileError] = field(default_factory=list)
    fatal: FileError | None = None


@dataclass
class Batch:
    """Samples stacked for one training step."""

    image: torch.Tensor  # uint8, (N, 3, crop, crop), on the CPU or already on the GPU
    mask: torch.Tensor  # uint8, (N, crop, crop)
    # Per-sample facts are NumPy arrays, not tensors: from a DataLoader worker each tensor comes
    # through shared memory with a file-descriptor handover of its own, an array inline.
    end_ns: np.ndarray  # int64, (N,)
    latency_ns: np.ndarray  # float64, (N,); NaN: not measured
    requested_bytes: np.ndarray  # float64, (N,); NaN: not measured
    first_time_bytes: np.ndarray  # float64, (N,); NaN: not measured
    errors: list[FileError] = field(default_factory=list)
    fatal: FileError | None = None
    refs: list[Any] | None = None  # which frame and crop each sample is, where a backend says

    def __len__(self) -> int:
        return int(self.image.shape[0])

    @classmethod
    def collate(cls, samples: list[Sample]) -> Batch:
        """The DataLoader's ``collate_fn`` (placeholders stay placeholders)."""
        return cls(
            image=_stack([s.image for s in samples]),
            mask=_stack([s.mask for s in samples]),
            end_ns=np.array([s.end_ns for s in samples], dtype=np.int64),
            latency_ns=_floats([s.latency_ns for s in samples]),
            requested_bytes=_floats([s.requested_bytes for s in samples]),
            first_time_bytes=_floats([s.first_time_bytes for s in samples]),
            errors=[error for s in samples for error in s.errors],
            fatal=next((s.fatal for s in samples if s.fatal is not None), None),
        )

    @classmethod
    def untimed(cls, image: torch.Tensor, mask: torch.Tensor, end_ns: int) -> Batch:
        """Samples made together by a backend that cannot time or count them one by one."""
        count = int(image.shape[0])
        return cls(
            image=image,
            mask=mask,
            end_ns=np.full(count, end_ns, dtype=np.int64),
            latency_ns=_floats([NOT_MEASURED] * count),
            requested_bytes=_floats([NOT_MEASURED] * count),
            first_time_bytes=_floats([NOT_MEASURED] * count),
        )

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        pixels = self.image.nbytes + self.mask.nbytes
        inline = pixels < INLINE_PIXEL_BYTES and not self.image.is_cuda
        for name in ("image", "mask"):
            tensor = state[name]
            if is_placeholder(tensor):
                state[name] = _PlaceholderState(tuple(tensor.shape))
            elif inline:
                state[name] = tensor.numpy()
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        for name in ("image", "mask"):
            if isinstance(state[name], np.ndarray):
                state[name] = torch.from_numpy(state[name])
            elif isinstance(state[name], _PlaceholderState):
                state[name] = placeholder_pixels(*state[name].shape)
        self.__dict__.update(state)

    def pin_memory(self) -> Batch:
        """Called by the DataLoader's pin-memory thread on CUDA: pin what goes to the GPU."""
        return replace(self, image=self.image.pin_memory(), mask=self.mask.pin_memory())


def sample_failure(file: str, frame: int | None, exc: BaseException) -> FileError:
    """(file, one line) for a sample that could not be read: the frame of a video, and the
    exception's type and message; the harness's own errors already name the file and say what
    is wrong, so they keep their words."""
    from harness.errors import HarnessError, one_line

    where = f"frame {frame}: " if frame is not None else ""
    if isinstance(exc, HarnessError):
        text = one_line(exc, 300).removeprefix(f"{file}: ")
    else:
        text = f"{type(exc).__name__}: {one_line(exc, 300)}"
    return file, where + text


def worker_error(exc: BaseException) -> str:
    """One line for an error re-raised from a DataLoader worker or a backend library, whose
    message carries the original traceback: the original exception's last line, not the
    flattened traceback."""
    from harness.errors import one_line

    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    if any(line.startswith("Original Traceback") for line in lines):
        return one_line(lines[-1], 300)  # "ValueError: ..." as the worker raised it
    return f"{type(exc).__name__}: {one_line(lines[0] if lines else exc, 300)}"


def _stack(pixels: list[torch.Tensor]) -> torch.Tensor:
    if all(is_placeholder(p) for p in pixels):
        return placeholder_pixels(len(pixels), *pixels[0].shape)
    return torch.stack(pixels)


def _floats(values: list[float]) -> np.ndarray:
    return np.array(values, dtype=np.float64)
