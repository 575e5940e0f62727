"""The set-up script's refusals, which come before anything is installed (what it installs is
measured on a fresh clone: README "Set-up")."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from conftest import REPO

SETUP = REPO / "tools" / "setup_venv.sh"


def _setup(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SETUP), str(tmp_path / "venv")],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def _fake_python(tmp_path: Path, version: str) -> Path:
    """An "interpreter" that reports ``version`` and can do nothing else."""
    path = tmp_path / f"python{version}"
    path.write_text(f'#!/bin/sh\n[ "$1" = "-c" ] && echo {version} && exit 0\nexit 1\n')
    path.chmod(0o755)
    return path


def test_an_old_or_broken_python_is_refused_first(tmp_path: Path) -> None:
    old = _setup(tmp_path, PYTHON=str(_fake_python(tmp_path, "3.9")))
    assert old.returncode == 2
    assert "needs Python 3.11 or newer" in old.stderr and "is Python 3.9" in old.stderr
    assert not (tmp_path / "venv").exists()  # nothing made
    broken = _setup(tmp_path, PYTHON="/bin/true")
    assert broken.returncode == 2 and "not a working Python" in broken.stderr
    missing = _setup(tmp_path, PYTHON="no-such-python3")
    assert missing.returncode == 2 and "no Python interpreter" in missing.stderr


def test_harness_python_without_torch_is_refused(tmp_path: Path) -> None:
    done = _setup(tmp_path, HARNESS_PYTHON=str(_fake_python(tmp_path, "3.12")))
    assert done.returncode == 2 and "has no torch to reuse" in done.stderr
    assert not (tmp_path / "venv").exists()
