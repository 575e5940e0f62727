"""Ceilings on one GPU, measured side by side, for reading the self-check's table.

    python benchmarks/gpu_probe.py VIDEO.mp4

Prints: the bare training step (U-Net 64, 512x512, batch 16, bf16, data already on the GPU), the
rate the self-check's loop cannot beat; NVDEC (PyNvVideoCodec) sequential, random-frame and
random-run-of-8 decode, one decoder and several in threads (whether the decoders run in parallel
under the GIL); PyAV's random-frame decode on one core. A section that cannot run prints
"not available: reason".
"""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

import numpy as np


def bare_step(batch: int = 16, crop: int = 512, steps: int = 30) -> None:
    for benchmark in (False, True):
        seconds = _time_steps(benchmark, batch, crop, steps)
        print(
            f"bare step (cudnn.benchmark={benchmark}): {seconds * 1e3:.1f} ms/step, "
            f"{batch / seconds:.0f} images/s"
        )


def _time_steps(benchmark: bool, batch: int, crop: int, steps: int) -> float:
    import torch
    import torch.nn.functional as F

    from harness.train.unet import UNet

    torch.backends.cudnn.benchmark = benchmark
    device = torch.device("cuda")
    model = UNet(5, 64, 4).to(device).to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    images = torch.randn(batch, 3, crop, crop, device=device)
    images = images.contiguous(memory_format=torch.channels_last)
    masks = torch.randint(0, 5, (batch, crop, crop), device=device)

    def step() -> None:
        with torch.autocast("cuda", dtype=torch.bfloat16):
            logits = model(images)
        loss = F.cross_entropy(logits.float(), masks)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for _ in range(10):
        step()
    torch.cuda.synchronize()
    started = time.perf_counter()
    for _ in range(steps):
        step()
    torch.cuda.synchronize()
    return (time.perf_counter() - started) / steps


def nvdec(video: Path, threads: int = 8) -> None:
    try:
        import PyNvVideoCodec as nvc
        import torch
    except Exception as exc:
        print(f"nvdec: not available: {' '.join(str(exc).split())[:200]}")
        return

    def decoder() -> object:
        return nvc.SimpleDecoder(
            str(video), gpu_id=0, use_device_memory=True, output_color_type=nvc.OutputColorType.RGB
        )

    first = decoder()
    frames = len(first)
    meta = first.get_stream_metadata()
    print(f"nvdec: {video.name}: {frames} frames, metadata {meta}")
    one = first[0]
    tensor = torch.from_dlpack(one)
    print(f"nvdec: frame 0 via DLPack: {tuple(tensor.shape)} {tensor.dtype} {tensor.device}")

    started = time.perf_counter()
    count = min(frames, 300)
    for batch_start in range(0, count, 30):
        first.get_batch_frames_by_index(list(range(batch_start, min(count, batch_start + 30))))
    torch.cuda.synchronize()
    print(f"nvdec sequential, 1 decoder: {count / (time.perf_counter() - started):.0f} frames/s")

    rng = np.random.default_rng(0)
    picks = [int(i) for i in rng.integers(0, frames, 40)]
    started = time.perf_counter()
    for index in picks:
        first[index]
    torch.cuda.synchronize()
    per = (time.perf_counter() - started) / len(picks)
    print(f"nvdec random frame, 1 decoder: {per * 1e3:.1f} ms/frame ({1 / per:.0f} samples/s)")

    # Runs of 8 consecutive frames from random positions (pipeline.sequence_length 8): what one
    # call costs against 8 single random frames shows whether the seek is paid once per run.
    starts = [int(i) for i in rng.integers(0, frames - 8, 20)]
    started = time.perf_counter()
    for start in starts:
        first.get_batch_frames_by_index(list(range(start, start + 8)))
    torch.cuda.synchronize()
    per = (time.perf_counter() - started) / len(starts)
    print(f"nvdec run of 8 frames, 1 decoder: {per * 1e3:.1f} ms/run ({8 / per:.0f} samples/s)")

    decoders = [decoder() for _ in range(threads)]
    done = [0] * threads

    def work(position: int) -> None:
        local = np.random.default_rng(position + 1)
        for index in local.integers(0, frames, 30):
            decoders[position][int(index)]
            done[position] += 1

    started = time.perf_counter()
    workers = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    torch.cuda.synchronize()
    rate = sum(done) / (time.perf_counter() - started)
    print(f"nvdec random frame, {threads} decoders in threads: {rate:.0f} samples/s")


def pyav(video: Path) -> None:
    try:
        from harness.data.video_reader import VideoReader
    except Exception as exc:
        print(f"pyav: not available: {exc}")
        return
    with VideoReader(video, 1) as reader:
        frames = reader.declared_frames
        picks = [int(i) for i in np.random.default_rng(0).integers(0, frames, 12)]
        started = time.perf_counter()
        for index in picks:
            reader.read(index)
        per = (time.perf_counter() - started) / len(picks)
    print(f"pyav random frame, 1 thread: {per * 1e3:.0f} ms/frame")


def main() -> None:
    video = Path(sys.argv[1])
    for section in (bare_step, lambda: nvdec(video), lambda: pyav(video)):
        try:
            section()
        except Exception as exc:  # one broken section must not hide the others
            print(f"probe section failed: {type(exc).__name__}: {' '.join(str(exc).split())[:300]}")


if __name__ == "__main__":
    main()
