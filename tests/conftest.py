"""Shared helpers: drive the real CLI in a subprocess or in process, write small scenario
files, copy the golden run folders (tests/data/golden/, made by tests/data/make_golden.py)."""

from __future__ import annotations

import functools
import json
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
GOLDEN = REPO / "tests" / "data" / "golden"


@pytest.fixture(autouse=True)
def index_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Indexes of brought datasets go to the test's own state folder, not the working
    directory's (subprocesses inherit it)."""
    folder = tmp_path / ".harness-index"
    monkeypatch.setenv("HARNESS_INDEX_DIR", str(folder))
    return folder


def byo_index(index_dir: Path) -> dict[str, Any]:
    """The one index the test wrote in ``index_dir``."""
    found = sorted(index_dir.glob("*/*.json"))
    assert len(found) == 1, found
    return json.loads(found[0].read_text())


@functools.cache
def gpu_here() -> str | None:
    """The GPU this machine has, as "name (how it was seen)", or None: NVML first (cheap, no
    CUDA context), then torch. A machine where either sees one is a GPU machine."""
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            if pynvml.nvmlDeviceGetCount() > 0:
                return f"{pynvml.nvmlDeviceGetName(pynvml.nvmlDeviceGetHandleByIndex(0))} (NVML)"
        finally:
            pynvml.nvmlShutdown()
    except Exception:  # no library, no driver, no device: NVML sees no GPU
        pass
    import torch

    return f"{torch.cuda.get_device_name(0)} (torch)" if torch.cuda.is_available() else None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """``requires_gpu`` tests skip where there is no GPU, ``no_gpu`` tests where there is one
    (they check what a machine without one does). Nothing is probed when neither is selected."""
    needs = {item: item.get_closest_marker("requires_gpu") is not None for item in items}
    refuses = {item: item.get_closest_marker("no_gpu") is not None for item in items}
    marked = [item for item in items if needs[item] or refuses[item]]
    if not marked:
        return
    gpu = gpu_here()
    for item in marked:
        if gpu is None and needs[item]:
            item.add_marker(pytest.mark.skip(reason="needs an NVIDIA GPU; torch and NVML see none"))
        elif gpu is not None and refuses[item]:
            item.add_marker(
                pytest.mark.skip(reason=f"checks a machine without a GPU; this has {gpu}")
            )


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


def run_harness(*args: str, cwd: Path | None = None, timeout: float = 300) -> Result:
    """Run ``python -m harness ARGS`` as a user would; never a traceback, whatever the outcome."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "harness", *args],
        cwd=cwd or REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert "Traceback" not in done.stderr, done.stderr
    return Result(done.returncode, done.stdout, done.stderr)


def free_port() -> int:
    """A TCP port no one listens on now (the kernel's pick) for a launcher's store: tests that
    run side by side (``pytest -n``) must not derive theirs from a process id and meet."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def copy_golden(name: str, target: Path) -> Path:
    """A copy of the golden run folder ``name`` (collage, video-cached, interrupted) at
    ``target``: tests edit their copy, never the checked-in folder."""
    source = GOLDEN / name
    if not (source / "manifest.json").exists():
        pytest.fail(f"{source}: missing golden run folder; regenerate with `make golden`")
    shutil.copytree(source, target)
    return target


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Callable[..., Result]:
    """``harness ARGS`` called in process through the CLI entry point ``harness.cli.main``,
    with what it printed: as fast as a function call, as seen by a user."""
    from harness.cli import main

    def call(*args: str) -> Result:
        capsys.readouterr()  # only this command's output
        try:
            code = main([str(arg) for arg in args])
        except SystemExit as exc:  # argparse's own refusals
            code = exc.code if isinstance(exc.code, int) else 2
        out, err = capsys.readouterr()
        return Result(code, out, err)

    return call


def tiny_video_scenario(root: Path, **changes: Any) -> dict[str, Any]:
    """A video scenario small enough to generate in about a second."""
    scenario: dict[str, Any] = {
        "name": "tiny-video",
        "dataset": {
            "kind": "video",
            "path": str(root / "videos"),
            "generate": {
                "videos": 2,
                "frames": 40,
                "width": 128,
                "height": 96,
                "fps": 25,
                "gop": 10,
                "crf": 20,
                "classes": 4,
                "objects": 3,
                "seed": 7,
                "workers": 1,
            },
        },
        "pipeline": {
            "mode": "cached",
            "crop": 64,
            "cache": {
                "path": str(root / "cache"),
                "format": "npy",
                "segment_frames": 8,
                "workers": 1,
            },
        },
        "training": {"steps": 10, "warmup_steps": 2},
    }
    return _merge(scenario, changes)


def tiny_collage_scenario(root: Path, **changes: Any) -> dict[str, Any]:
    scenario: dict[str, Any] = {
        "name": "tiny-collage",
        "dataset": {
            "kind": "image_collage",
            "path": str(root / "collage"),
            "generate": {
                "images": 3,
                "width": 160,
                "height": 120,
                "classes": 4,
                "objects_per_image": 12,
                "seed": 3,
                "workers": 1,
            },
        },
        "pipeline": {"crop": 64},
        "training": {"steps": 10, "warmup_steps": 2},
    }
    return _merge(scenario, changes)


def _merge(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """Apply changes given as dotted keys with '__' for '.' (dataset__generate__seed=1)."""
    for key, value in changes.items():
        node = base
        parts = key.split("__")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return base


@pytest.fixture
def write_scenario(tmp_path: Path) -> Callable[[dict[str, Any], str], Path]:
    def write(scenario: dict[str, Any], name: str = "scenario.yaml") -> Path:
        path = tmp_path / name
        path.write_text(yaml.safe_dump(scenario, sort_keys=False))
        return path

    return write


def mount_tmpfs(folder: Path, size: str = "1m") -> None:
    """Mount a real tmpfs of ``size`` on ``folder`` (created), or skip the test saying why.
    Needs root, which CI and the development machines have; unmount with ``umount``."""
    folder.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")


@pytest.fixture
def small_disk(tmp_path: Path):
    """A 1 MiB tmpfs: a real filesystem that fills up."""
    mount = tmp_path / "small-disk"
    mount_tmpfs(mount)
    yield mount
    subprocess.run(["umount", str(mount)], check=True)


def flat_profile(path: Path, step_s: float = 0.02, **settings: int) -> Path:
    """A compute profile of a constant step for the tiny scenarios' settings (batch 4, crop 48,
    U-Net 8x2), written to ``path`` (an emulated run's ``training.profile``)."""
    document = {
        "format": "harness-profile",
        "format_version": 1,
        "name": f"flat-{step_s * 1000:g}ms",
        "device": "test",
        "settings": {
            "batch_size": 4,
            "crop": 48,
            "width": 8,
            "depth": 2,
            "classes": 4,
            "precision": "fp32",
            "optimizer": "adamw",
            **settings,
        },
        "flops_per_batch": None,
        "mean_step_s": step_s,
        "step_s": [step_s],
        "how": "written by hand for a test",
    }
    path.write_text(json.dumps(document))
    return path
