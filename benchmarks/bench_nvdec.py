"""The nvdec backend's choices, side by side on one GPU: who reads the file (a counting Python
file object, or the SDK's demuxer by path), how many decoder threads, the interpreter's switch
interval, and sequences vs single random frames.

    python benchmarks/bench_nvdec.py [--duration S]

Each variant is a real ``harness run`` of ``scenarios/gpu/video_decoded_sequences.yaml`` (or
``video_decoded.yaml``) with the nvdec backend, in its own process, evaluation off. Prints
samples/s, NVML GPU utilisation, busy % and data-wait %, and each variant's samples/s as a ratio
of the first, all measured in the same session.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from harness.pipeline.nvdec_backend import SDK_READS_ENV
from harness.train.loop import DEFAULT_STREAM_ENV

ROOT = Path(__file__).resolve().parent.parent
SEQUENCES = ROOT / "scenarios/gpu/video_decoded_sequences.yaml"
SINGLE = ROOT / "scenarios/gpu/video_decoded.yaml"

# name, scenario, decoder threads, counting reads, switch interval (s) or None, training on a
# stream of its own (True) or on the legacy default stream
VARIANTS = [
    ("L8 python-reads 8 threads", SEQUENCES, 8, True, None, False),
    ("L8 sdk-reads 8 threads", SEQUENCES, 8, False, None, False),
    ("L8 sdk-reads 4 threads", SEQUENCES, 4, False, None, False),
    ("L8 python-reads 8 threads switch 0.5 ms", SEQUENCES, 8, True, 0.0005, False),
    ("L1 sdk-reads 8 threads", SINGLE, 8, False, None, False),
    ("L8 python-reads 8 threads side stream", SEQUENCES, 8, True, None, True),
    ("L1 python-reads 8 threads side stream", SINGLE, 8, True, None, True),
]

DRIVER = """
import sys
if {switch!r} is not None:
    sys.setswitchinterval({switch!r})
from harness.cli import main
raise SystemExit(main({argv!r}))
"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=float, default=15.0)
    parser.add_argument(
        "--variants", default=None, help="comma-separated indices into VARIANTS (default: all)"
    )
    args = parser.parse_args()
    chosen = (
        VARIANTS if args.variants is None else [VARIANTS[int(i)] for i in args.variants.split(",")]
    )
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for index, (name, scenario, threads, count, switch, side) in enumerate(chosen):
            results = Path(folder) / str(index)
            argv = [
                "run",
                str(scenario),
                "--quiet",
                "--results",
                str(results),
                "-o",
                "pipeline.backend=nvdec",
                "-o",
                f"pipeline.workers={threads}",
                "-o",
                f"training.duration_s={args.duration}",
                "-o",
                "training.eval_samples=0",
            ]
            code = DRIVER.format(switch=switch, argv=argv)
            env = {
                **os.environ,
                SDK_READS_ENV: "0" if count else "1",
                DEFAULT_STREAM_ENV: "0" if side else "1",
            }
            done = subprocess.run(
                [sys.executable, "-c", code], capture_output=True, text=True, env=env
            )
            summaries = list(results.glob("*/summary.json"))
            if done.returncode != 0 or not summaries:
                print(f"{name}: failed ({done.returncode}): {done.stderr.strip()[-300:]}")
                continue
            metrics = json.loads(summaries[0].read_text())["metrics"]
            utils = [m["value"] for k, m in metrics.items() if k.startswith("gpu_util_pct[")]
            rows.append(
                (
                    name,
                    metrics["samples_per_s"]["value"],
                    utils[0] if utils else float("nan"),
                    metrics["busy_pct"]["value"],
                    metrics["data_wait_pct"]["value"],
                )
            )
    if not rows:
        return
    base = rows[0][1]
    print(f"{'variant':42} {'samples/s':>9} {'ratio':>6} {'GPU %':>6} {'busy %':>6} {'wait %':>6}")
    for name, rate, util, busy, wait in rows:
        print(f"{name:42} {rate:9.1f} {rate / base:6.2f} {util:6.1f} {busy:6.1f} {wait:6.1f}")


if __name__ == "__main__":
    main()
