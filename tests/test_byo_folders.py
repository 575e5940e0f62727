"""Brought folders that are not plain folders of plain files, through the CLI in process: an
unreadable folder or file, a named pipe, socket, device, dangling symlink or symlink loop named
like data, a dataset path that is not a folder, an index folder nothing can be written in, and a
hand-edited index. Each is one line naming it, exit 2; nothing is skipped, nothing is opened.

Tests run as root here, where mode 000 stops no read: the unreadable cases run the CLI in a forked
child that first drops every capability (capset(2)), so that the kernel checks the mode bits for
it as for any user, and the folder is really refused by the kernel."""

from __future__ import annotations

import ctypes
import io
import json
import os
import signal
import socket
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from conftest import Result, tiny_collage_scenario, tiny_video_scenario
from PIL import Image

from harness.data.byo_layout import listed_files
from harness.errors import HarnessError
from harness.files import ensure_writable_dir
from harness.scenario import VideoDataset


def _video_folder(tmp_path: Path, write_scenario, folder: Path) -> Path:
    scenario = tiny_video_scenario(tmp_path, dataset__label_rule="luma_bins")
    del scenario["dataset"]["generate"]
    scenario["dataset"].update(path=str(folder), classes=4)
    return write_scenario(scenario)


def _image_folder(tmp_path: Path, write_scenario, folder: Path) -> Path:
    """A brought folder of two small images with masks, and its scenario."""
    (folder / "images").mkdir(parents=True)
    (folder / "masks").mkdir()
    rng = np.random.default_rng(0)
    for index in range(2):
        picture = rng.integers(0, 255, (80, 80, 3), dtype=np.uint8)
        Image.fromarray(picture).save(folder / f"images/shot{index}.png")
        mask = rng.integers(0, 3, (80, 80), dtype=np.uint8)
        Image.fromarray(mask).save(folder / f"masks/shot{index}.png")
    scenario = tiny_collage_scenario(tmp_path)
    del scenario["dataset"]["generate"]
    scenario["dataset"].update(path=str(folder), classes=3)
    return write_scenario(scenario)


@pytest.fixture
def no_hang() -> Iterator[None]:
    """A test that would block on a named pipe fails after 30 s instead of hanging the suite."""

    def expired(*_args: object) -> None:
        raise AssertionError("blocked: a special file was opened")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(30)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


def _one_error(result: Result) -> str:
    assert result.returncode == 2, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0].removeprefix("error: ")


# -- special files named like data ---------------------------------------------------------


def _make_special(path: Path, kind: str, tmp_path: Path) -> None:
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "socket":
        server = socket.socket(socket.AF_UNIX)
        server.bind(str(path))
        server.close()  # the socket file stays
    elif kind == "device":
        path.symlink_to("/dev/zero")  # resolved, it is a character device
    elif kind == "dangling":
        path.symlink_to(tmp_path / "gone.mp4")
    elif kind == "loop":
        path.symlink_to(path.name)  # itself
    elif kind == "folder":
        path.symlink_to(tmp_path)


SPECIAL = {
    "fifo": "a named pipe (FIFO), not a regular file: refused",
    "socket": "a socket, not a regular file: refused",
    "device": "a character device, not a regular file: refused",
    "dangling": "dangling symlink (to {tmp}/gone.mp4), refused",
    "loop": "symlink loop, refused",
    "folder": "a folder, not a regular file: refused",
}


@pytest.mark.parametrize("kind", list(SPECIAL))
def test_special_video_files_are_refused_never_opened(
    tmp_path: Path, write_scenario, cli, index_dir: Path, no_hang: None, kind: str
) -> None:
    folder = tmp_path / "footage"
    (folder / "day").mkdir(parents=True)
    (folder / "day/lobby.mp4").write_bytes(b"not looked at: the listing refuses first")
    _make_special(folder / "day/cam.mp4", kind, tmp_path)
    message = _one_error(cli("datagen", _video_folder(tmp_path, write_scenario, folder)))
    expected = SPECIAL[kind].format(tmp=tmp_path)
    assert message.startswith(f"{folder}/day/cam.mp4: {expected}"), message
    assert not list(index_dir.glob("*/*.json"))


def test_special_mask_files_are_refused(
    tmp_path: Path, write_scenario, cli, index_dir: Path, no_hang: None
) -> None:
    folder = tmp_path / "photos"
    scenario = _image_folder(tmp_path, write_scenario, folder)
    (folder / "masks/shot1.png").unlink()
    os.mkfifo(folder / "masks/shot1.png")
    message = _one_error(cli("datagen", scenario))
    assert message.startswith(f"{folder}/masks/shot1.png: a named pipe (FIFO), not a regular")


def test_symlinks_to_regular_files_are_data_and_others_unnamed_like_data_are_ignored(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "footage"
    folder.mkdir()
    (tmp_path / "real.mp4").write_bytes(b"x")
    (folder / "linked.mp4").symlink_to(tmp_path / "real.mp4")
    os.mkfifo(folder / "notes.txt")  # not named like data: never a candidate, never opened
    (folder / "old.txt").symlink_to(tmp_path / "gone")
    dataset = VideoDataset(kind="video", path=str(folder), classes=4, label_rule="luma_bins")
    assert listed_files(dataset) == [folder / "linked.mp4"]


# -- folders and files the kernel will not let us read ---------------------------------------


def _drop_capabilities() -> None:
    """Drop every capability of this process (capset(2), version 3): root then reads by the
    mode bits like any user. Reducing one's own capabilities needs no privilege."""

    class Header(ctypes.Structure):
        _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]

    class Data(ctypes.Structure):
        _fields_ = [(n, ctypes.c_uint32) for n in ("effective", "permitted", "inheritable")]

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.capset(ctypes.byref(Header(0x20080522, 0)), (Data * 2)()) != 0:
        raise OSError(ctypes.get_errno(), "capset")


def _cli_unprivileged(*args: str | Path) -> Result:
    """``harness ARGS`` in process, in a forked child without capabilities."""
    from harness.cli import main

    reader, writer = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code, out = 70, io.StringIO()
        try:
            _drop_capabilities()
            sys.stdout = sys.stderr = out
            code = main([str(a) for a in args])
        except BaseException as exc:  # reported to the parent, whose assertion then fails
            out.write(f"child failed: {exc!r}")
        finally:
            os.write(writer, json.dumps({"code": code, "err": out.getvalue()}).encode())
            os._exit(0)
    os.close(writer)
    with os.fdopen(reader) as pipe:
        report = json.loads(pipe.read())
    os.waitpid(pid, 0)
    return Result(report["code"], "", report["err"])


@pytest.fixture
def unreadable() -> Iterator[Callable[[Path], None]]:
    """``make(path)``: mode 000 for the test (restored after, so that tmp_path can be removed)."""
    made: list[Path] = []

    def make(path: Path) -> None:
        path.chmod(0)
        made.append(path)

    yield make
    for path in made:
        path.chmod(0o755)


def test_unreadable_video_subfolder_is_named_not_skipped(
    tmp_path: Path, write_scenario, index_dir: Path, unreadable
) -> None:
    folder = tmp_path / "footage"
    for day in ("monday", "tuesday"):
        (folder / day).mkdir(parents=True)
        (folder / day / "cam.mp4").write_bytes(b"x")
    unreadable(folder / "tuesday")
    message = _one_error(
        _cli_unprivileged("datagen", _video_folder(tmp_path, write_scenario, folder))
    )
    assert message == (
        f"{folder}/tuesday: cannot list this folder of the dataset: Permission denied"
    )


@pytest.mark.parametrize("part", ["images", "masks", "images/shot1.png", "masks/shot0.png", "."])
def test_unreadable_image_folders_and_files_are_named(
    tmp_path: Path, write_scenario, index_dir: Path, unreadable, part: str
) -> None:
    folder = tmp_path / "photos"
    scenario = _image_folder(tmp_path, write_scenario, folder)
    unreadable(folder / part)
    message = _one_error(_cli_unprivileged("datagen", scenario))
    named = folder / part if part != "." else folder
    expected = {
        "images": f"{named}: cannot list this folder of the dataset: Permission denied",
        "masks": f"{named}: cannot list this folder of the dataset: Permission denied",
        "images/shot1.png": f"{named}: cannot read it: permission denied",
        "masks/shot0.png": f"{named}: cannot read it: permission denied",
        ".": f"{folder}/images: cannot reach it: Permission denied",
    }[part]
    assert message == expected


# -- wrong words -------------------------------------------------------------------------------


def test_a_dataset_path_that_is_not_a_folder_says_so(
    tmp_path: Path, write_scenario, cli, index_dir: Path
) -> None:
    scenario = _video_folder(tmp_path, write_scenario, Path("/dev/zero"))
    assert _one_error(cli("datagen", scenario)) == (
        "dataset.path /dev/zero: not a folder (a character device)"
    )
    (tmp_path / "file").write_text("")
    scenario = _video_folder(tmp_path, write_scenario, tmp_path / "file")
    assert _one_error(cli("datagen", scenario)).endswith("file: not a folder (a regular file)")
    scenario = _video_folder(tmp_path, write_scenario, tmp_path / "nowhere")
    assert _one_error(cli("datagen", scenario)).endswith(
        "nowhere: no such folder (bring-your-own data)"
    )


@pytest.mark.parametrize(
    ("folder", "reason"),
    [
        ("/proc/self", "not a regular folder (its file system takes no new files, like /proc)"),
        ("/proc/self/new", "/proc/self is not a regular folder (its file system takes no new"),
        ("/dev/zero", "/dev/zero is not a folder (a character device)"),
        ("/dev/zero/index", "/dev/zero is not a folder (a character device)"),
    ],
)
def test_folders_that_take_no_files_say_why(folder: str, reason: str) -> None:
    with pytest.raises(HarnessError) as error:
        ensure_writable_dir(Path(folder))
    assert str(error.value).startswith(f"cannot write in {folder}: {reason}"), str(error.value)


def test_an_index_folder_in_proc_says_why(
    tmp_path: Path, write_scenario, cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HARNESS_INDEX_DIR", "/proc/self")
    scenario = _image_folder(tmp_path, write_scenario, tmp_path / "photos")
    message = _one_error(cli("datagen", scenario))
    assert message.startswith("cannot write in /proc/self/photos-"), message
    assert message.endswith(
        ": /proc/self is not a regular folder (its file system takes no new files, like /proc)"
    )


# -- a hand-edited index -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("edit", "named"),
    [
        (lambda index: index.pop("classes"), "no key classes"),
        (lambda index: index.pop("files"), "no key files"),
        (lambda index: index["files"][1].pop("width"), "no key files[1].width"),
        (lambda index: index.update(total_bytes="many"), "total_bytes should be a whole number"),
        (lambda index: index["files"].__setitem__(0, 3), "files[0] is not an object"),
    ],
)
def test_a_hand_edited_index_names_its_file_and_key(
    tmp_path: Path, write_scenario, cli, index_dir: Path, edit, named: str
) -> None:
    scenario = _image_folder(tmp_path, write_scenario, tmp_path / "photos")
    assert cli("datagen", scenario).returncode == 0
    (path,) = index_dir.glob("*/*.json")
    index = json.loads(path.read_text())
    edit(index)
    path.write_text(json.dumps(index))
    for command in ("datagen", "run"):
        message = _one_error(cli(command, scenario))
        assert message.startswith(f"{path}: {named}"), message
        assert message.endswith("rewrite it with `harness datagen SCENARIO --force`")
    assert cli("datagen", scenario, "--force").returncode == 0  # as the advice says
    assert cli("datagen", scenario).stdout.startswith("bring-your-own image_collage at ")
