"""Pool workers die with their parent: SIGKILL of ``harness datagen`` alone (not its process
group: what a CI timeout or the OOM killer does) leaves no worker writing, and a resume then
produces the same files as an uninterrupted generation (with one process: several workers make
the same files as one). Frame-cache builds use the same pool
(``harness.data.parallel``), so the same initializer covers them.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO, tiny_collage_scenario

# enough that two workers are still busy when the parent is killed, however fast they draw
IMAGES = 16


def _children(pid: int) -> list[int]:
    return [
        int(child)
        for task in Path(f"/proc/{pid}/task").iterdir()
        for child in (task / "children").read_text().split()
    ]


def _alive(pid: int) -> bool:
    """Running (a zombie waiting for its new parent to reap it writes nothing)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


def _until(condition, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.01)


def _checksums(root: Path) -> dict[str, str]:
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file() and path.name != "dataset.json"
    }


@pytest.mark.slow
def test_killed_datagen_leaves_no_worker_and_resumes_to_the_same_files(
    tmp_path: Path, write_scenario, cli
) -> None:
    def scenario(folder: str, workers: int) -> Path:
        document = tiny_collage_scenario(
            tmp_path,
            dataset__path=str(tmp_path / folder),
            dataset__generate__images=IMAGES,
            dataset__generate__width=1536,
            dataset__generate__height=1152,
            dataset__generate__workers=workers,
            # every image rendered whole: pooled images are written too fast to kill mid-way
            dataset__generate__unique="full",
        )
        return write_scenario(document, f"{folder}.yaml")

    path = scenario("killed", 2)
    generation = subprocess.Popen(
        [sys.executable, "-m", "harness", "datagen", str(path)],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    images = tmp_path / "killed" / "images"
    try:
        # The pool is writing once its first file is finished: kill the parent alone then.
        _until(lambda: generation.poll() is not None or any(images.glob("img_*.npy")), "a file")
        assert generation.poll() is None, "the generation ended before it could be killed"
        workers = _children(generation.pid)
        assert len(workers) >= 2, workers
        os.kill(generation.pid, signal.SIGKILL)
        generation.wait()
        _until(lambda: not any(_alive(pid) for pid in workers), "every worker is gone", 10)
    finally:
        if generation.poll() is None:
            os.killpg(generation.pid, signal.SIGKILL)
        generation.wait()
    finished = len(list(images.glob("img_*.npy")))
    assert finished < IMAGES, "nothing was left to resume"
    # in process from here (an interpreter start is seconds on a loaded machine)
    resumed = cli("datagen", path)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming: {finished} of {IMAGES} files already generated" in resumed.stdout
    whole = scenario("whole", 1)  # one process: several make the same files as one
    assert cli("datagen", whole).returncode == 0
    assert _checksums(tmp_path / "killed") == _checksums(tmp_path / "whole")


def test_a_worker_whose_parent_is_already_gone_ends_itself() -> None:
    """With its parent alive a worker goes on; if the parent died between the fork and the
    initializer, the worker ends at once."""
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import os; from harness.lifeline import die_with_parent; "
            "die_with_parent(os.getppid()); print('alive', flush=True); "
            "die_with_parent(1); print('still here')",  # 1: not this process's parent
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == -signal.SIGKILL, done.stderr
    assert done.stdout.split() == ["alive"]
