"""The environment tables, checked against what the system's own tools say on this machine."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import av
import numpy
import pytest
import torch
from conftest import mount_tmpfs

from harness import env as env_module
from harness.env import environment, find_mount, hardware_identity, parse_mountinfo_line

NA = "not available: "

HARDWARE_KEYS = {
    "hostname",
    "cpu_model",
    "cpu_logical_cores",
    "cpu_cores_available",
    "ram_total_bytes",
    "ram_total_GiB",
    "gpu_count",
    "gpus",
    "gpu_driver_version",
    "cuda_driver_version",
    "torch_cuda_devices",
    "storage_path",
    "storage_resolved_path",
    "storage_mount_point",
    "storage_fs_type",
    "storage_mount_options",
    "storage_super_options",
    "storage_source",
    "storage_nfs_source",
    "storage_nfs_server",
    "storage_nfs_export",
    "storage_device",
    "storage_partition",
    "storage_device_model",
    "storage_device_size_bytes",
    "storage_device_size_GB",
    "storage_device_rotational",
    "storage_device_scheduler",
    "storage_device_components",
}
SOFTWARE_KEYS = {
    "os",
    "kernel",
    "architecture",
    "python",
    "harness",
    "torch",
    "nvidia_dali",
    "nvidia_dali_package",
    "av",
    "nvidia_ml_py",
    "numpy",
    "pandas",
    "torch_cuda_runtime",
}
IDENTITY_KEYS = {
    "gpu_model",
    "gpu_count",
    "gpu_driver_version",
    "cpu_model",
    "storage_device",
    "storage_fs_type",
}


def nvml_works() -> bool:
    try:
        import pynvml

        pynvml.nvmlInit()
        pynvml.nvmlShutdown()
        return True
    except Exception:
        return False


def test_tables_have_every_key_and_are_json(tmp_path: Path) -> None:
    env = environment(tmp_path)
    assert set(env) == {"hardware", "software"}
    assert set(env["hardware"]) == HARDWARE_KEYS
    assert set(env["software"]) == SOFTWARE_KEYS
    json.dumps(env)  # goes into manifest.json as it is


def test_cpu_and_memory_are_this_machines(tmp_path: Path) -> None:
    hardware = environment(tmp_path)["hardware"]
    assert hardware["cpu_logical_cores"] == os.cpu_count()
    assert hardware["cpu_cores_available"] == len(os.sched_getaffinity(0))
    assert isinstance(hardware["cpu_model"], str) and hardware["cpu_model"]
    total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    assert hardware["ram_total_bytes"] == total
    assert hardware["ram_total_GiB"] == round(total / 2**30, 2)


def test_gpu_fields_say_why_they_are_missing_without_nvml(tmp_path: Path) -> None:
    hardware = environment(tmp_path)["hardware"]
    if nvml_works():
        assert isinstance(hardware["gpu_count"], int)
        assert len(hardware["gpus"]) == hardware["gpu_count"]
        for gpu in hardware["gpus"]:
            assert {"index", "name", "memory_total_bytes", "memory_total_GiB", "uuid"} <= set(gpu)
        return
    for key in ("gpu_count", "gpus", "gpu_driver_version", "cuda_driver_version"):
        assert isinstance(hardware[key], str) and hardware[key].startswith(NA), key
    devices = hardware["torch_cuda_devices"]
    assert isinstance(devices, str) and devices.startswith(NA)


def tool_says(path: Path) -> tuple[str, str] | None:
    """(mount point, filesystem type) of ``path`` according to findmnt, else GNU stat."""
    if shutil.which("findmnt"):
        done = subprocess.run(
            ["findmnt", "-J", "-o", "TARGET,FSTYPE", "-T", str(path)],
            capture_output=True,
            text=True,
            check=True,
        )
        found = json.loads(done.stdout)["filesystems"][0]
        return found["target"], found["fstype"]
    if shutil.which("stat"):
        done = subprocess.run(
            ["stat", "-f", "-c", "%T", str(path)], capture_output=True, text=True, check=True
        )
        fs_type = done.stdout.strip()
        done = subprocess.run(["stat", "-c", "%m", str(path)], capture_output=True, text=True)
        mount_point = done.stdout.strip() if done.returncode == 0 else ""
        return mount_point, fs_type
    return None


def same_fs_type(ours: str, theirs: str) -> bool:
    """stat -f names some families rather than drivers ("ext2/ext3" for ext4, "nfs" for nfs4)."""
    if ours == theirs:
        return True
    if theirs == "ext2/ext3":
        return ours in {"ext2", "ext3", "ext4"}
    return ours.startswith(theirs) or theirs.startswith(ours)


def check_storage_against_tools(path: Path) -> None:
    hardware = environment(path)["hardware"]
    said = tool_says(path)
    if said is None:
        pytest.skip("neither findmnt nor stat is installed")
    mount_point, fs_type = said
    assert same_fs_type(hardware["storage_fs_type"], fs_type), (hardware, said)
    if mount_point:
        assert hardware["storage_mount_point"] == mount_point
    # Independent of any tool: the mount point is on the same filesystem as the path.
    assert os.stat(hardware["storage_mount_point"]).st_dev == os.stat(path).st_dev


def test_storage_of_a_tmp_dir_matches_the_system_tools(tmp_path: Path) -> None:
    check_storage_against_tools(tmp_path)


def test_storage_of_a_block_device_names_the_disk(tmp_path: Path) -> None:
    hardware = environment(tmp_path)["hardware"]
    if str(hardware["storage_device"]).startswith(NA):
        pytest.skip(f"{tmp_path} is not on a local block device here")
    disk = hardware["storage_device"]
    assert (Path("/sys/block") / disk).is_dir()
    assert (
        hardware["storage_device_size_bytes"]
        == int((Path("/sys/block") / disk / "size").read_text()) * 512
    )
    assert isinstance(hardware["storage_device_rotational"], bool)
    assert "[" not in str(hardware["storage_device_scheduler"])


def test_a_dataset_not_yet_generated_reports_its_nearest_existing_parent(tmp_path: Path) -> None:
    hardware = environment(tmp_path / "not" / "yet" / "there")["hardware"]
    assert hardware["storage_path"] == str(tmp_path / "not" / "yet" / "there")
    assert hardware["storage_resolved_path"] == str(tmp_path.resolve())
    assert hardware["storage_fs_type"] == environment(tmp_path)["hardware"]["storage_fs_type"]


def test_a_mount_point_with_a_space_is_found(tmp_path: Path) -> None:
    """A real tmpfs mounted on "with space" (mountinfo writes it as with\\040space)."""
    mount = tmp_path / "with space"
    mount_tmpfs(mount)
    try:
        (mount / "data").mkdir()
        hardware = environment(mount / "data")["hardware"]
        assert hardware["storage_mount_point"] == str(mount.resolve())
        assert hardware["storage_fs_type"] == "tmpfs"
        assert str(hardware["storage_device"]).startswith(NA)
        check_storage_against_tools(mount / "data")
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def test_nfs_source_is_split_into_server_and_export() -> None:
    """A line as an NFS client's kernel writes it (no NFS server to mount here)."""
    text = (
        "22 27 0:21 / /proc rw,relatime - proc proc rw\n"
        "27 1 254:0 / / rw,relatime - ext4 /dev/vda rw\n"
        "90 27 0:50 / /mnt/flash\\040array rw,relatime shared:40 - nfs4 "
        "filer-1:/export/datasets rw,vers=4.1,rsize=1048576,wsize=1048576,proto=tcp\n"
    )
    mount = find_mount(Path("/mnt/flash array/coco"), text)
    assert mount is not None
    assert mount.mount_point == "/mnt/flash array"
    assert mount.fs_type == "nfs4"
    assert "rsize=1048576" in mount.super_options
    nfs = env_module._nfs(mount)
    assert nfs["storage_nfs_server"] == "filer-1"
    assert nfs["storage_nfs_export"] == "/export/datasets"
    assert find_mount(Path("/mnt/flashy"), text).mount_point == "/"  # a prefix is not a parent
    ipv6 = parse_mountinfo_line("91 27 0:51 / /mnt/v6 rw - nfs [fd00::1]:/srv rw,vers=3")
    assert ipv6 is not None
    assert env_module._nfs(ipv6)["storage_nfs_server"] == "[fd00::1]"


def test_versions_match_the_modules(tmp_path: Path) -> None:
    software = environment(tmp_path)["software"]
    assert software["torch"] == torch.__version__
    assert software["av"] == av.__version__
    assert software["numpy"] == numpy.__version__
    expected_cuda = torch.version.cuda or ""
    if expected_cuda:
        assert software["torch_cuda_runtime"] == expected_cuda
    else:
        assert str(software["torch_cuda_runtime"]).startswith(NA)
    assert software["harness"] == __import__("harness").__version__
    for key in ("nvidia_dali", "pandas", "nvidia_ml_py"):
        assert isinstance(software[key], str) and software[key]


def test_torch_cuda_runtime_is_read_without_importing_torch() -> None:
    """In a fresh interpreter, so that this test's own import of torch does not answer for it."""
    code = (
        "import sys, json, time; from pathlib import Path; from harness.env import environment; "
        "started = time.perf_counter(); env = environment(Path('.')); "
        "elapsed = time.perf_counter() - started; "
        "print(json.dumps([env['software']['torch_cuda_runtime'], 'torch' in sys.modules, "
        "elapsed]))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    runtime, imported, elapsed = json.loads(done.stdout)
    assert not imported or nvml_works()  # what made it slow: torch imported for one field
    assert elapsed >= 0
    if torch.version.cuda:
        assert runtime == torch.version.cuda
    else:
        assert runtime.startswith(NA)


def test_hardware_identity_is_stable_and_has_the_identifying_fields(tmp_path: Path) -> None:
    first = hardware_identity(environment(tmp_path))
    second = hardware_identity(environment(tmp_path))
    assert first == second
    assert set(first) == IDENTITY_KEYS
    assert hardware_identity({}) == hardware_identity({"hardware": {}})  # an old manifest


def test_it_is_fast(tmp_path: Path) -> None:
    started = time.perf_counter()
    environment(tmp_path)
    assert time.perf_counter() - started < 2.0
