"""The hardware and software of a run: the tables a reader needs to judge and reproduce a number.

A throughput figure means little without the machine behind it (the study's Tables 2 and 3), and
two runs are only comparable on comparable hardware: a run records :func:`environment`, and a
comparison checks that :func:`hardware_identity` agrees before it judges a change.

Collecting it must never fail a run: each field that cannot be read says
``"not available: <reason>"`` instead. It must also be cheap (well under a second without a GPU),
so versions come from package metadata rather than from importing heavy modules, and torch is
imported only where NVML says there is a GPU to ask it about.
"""

from __future__ import annotations

import ast
import contextlib
import importlib.metadata
import importlib.util
import os
import platform
import re
import shlex
import socket
import stat
import sys
from dataclasses import dataclass
from pathlib import Path

import harness

NOT_AVAILABLE = "not available"
NOT_INSTALLED = "not installed"
GIB = 2**30
GB = 10**9
SECTOR = 512  # /sys/block/<dev>/size counts 512-byte sectors whatever the device's block size
MOUNTINFO = Path("/proc/self/mountinfo")
SYS_DEV_BLOCK = Path("/sys/dev/block")
SYS_BLOCK = Path("/sys/block")

# Python packages reported in the software table: key -> (distribution names, import name).
# The first installed distribution wins; several names cover the CUDA-specific DALI builds and the
# deprecated ``pynvml`` shim that some machines still carry instead of ``nvidia-ml-py``.
PACKAGES: dict[str, tuple[tuple[str, ...], str]] = {
    "torch": (("torch",), "torch"),
    "nvidia_dali": (
        ("nvidia-dali-cuda130", "nvidia-dali-cuda120", "nvidia-dali-cuda110"),
        "nvidia.dali",
    ),
    "av": (("av",), "av"),
    "nvidia_ml_py": (("nvidia-ml-py", "pynvml"), "pynvml"),
    "numpy": (("numpy",), "numpy"),
    "pandas": (("pandas",), "pandas"),
}


def not_available(reason: str) -> str:
    """The value of a field that could not be read; one line, so that tables stay tables."""
    return f"{NOT_AVAILABLE}: {' '.join(str(reason).split())}"


def environment(dataset_path: Path) -> dict[str, dict[str, object]]:
    """``{"hardware": {...}, "software": {...}}`` for a run whose data lives at ``dataset_path``.

    ``dataset_path`` need not exist yet (a dataset about to be generated): its storage is that of
    the nearest existing parent. Never raises for a source that is missing or unreadable.
    """
    hardware: dict[str, object] = {"hostname": socket.gethostname()}
    hardware.update(_cpu())
    hardware.update(_memory())
    hardware.update(_gpus())
    hardware.update(_storage(Path(dataset_path)))
    return {"hardware": hardware, "software": _software()}


def hardware_identity(env: dict) -> dict[str, object]:
    """The fields that decide whether two runs ran on comparable hardware: GPU model and count,
    GPU driver, CPU model, storage device and filesystem. Hostnames, core affinity and mount
    options are left out: they differ between identical machines or between runs on one."""
    hardware = env.get("hardware", {}) if isinstance(env, dict) else {}
    missing = not_available("not recorded")
    gpus = hardware.get("gpus", missing)
    if isinstance(gpus, list):
        names = sorted({str(gpu.get("name", "?")) for gpu in gpus if isinstance(gpu, dict)})
        gpu_model: object = ", ".join(names) if names else "none"
    else:
        gpu_model = gpus
    return {
        "gpu_model": gpu_model,
        "gpu_count": hardware.get("gpu_count", missing),
        "gpu_driver_version": hardware.get("gpu_driver_version", missing),
        "cpu_model": hardware.get("cpu_model", missing),
        "storage_device": _storage_device_identity(hardware),
        "storage_fs_type": hardware.get("storage_fs_type", missing),
    }


def _storage_device_identity(hardware: dict) -> object:
    """The device model where the kernel names one (device names such as nvme1n1 vary between
    identical machines), else the device name, else the NFS export or the mount source."""
    for key in ("storage_device_model", "storage_device", "storage_nfs_source"):
        value = hardware.get(key)
        if isinstance(value, str) and value and not value.startswith(NOT_AVAILABLE):
            return value
    return hardware.get("storage_source", not_available("not recorded"))


# --- CPU and memory ----------------------------------------------------------------------------


def _cpu() -> dict[str, object]:
    model: object = not_available("no 'model name' in /proc/cpuinfo")
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            for line in handle:
                key, _, value = line.partition(":")
                if key.strip() == "model name":
                    model = value.strip()
                    break
    except OSError as exc:
        model = not_available(f"/proc/cpuinfo: {exc.strerror or exc}")
    try:
        available: object = len(os.sched_getaffinity(0))
    except (AttributeError, OSError) as exc:
        available = not_available(f"sched_getaffinity: {exc}")
    return {
        "cpu_model": model,
        "cpu_logical_cores": os.cpu_count() or not_available("os.cpu_count() unknown"),
        "cpu_cores_available": available,
    }


def _memory() -> dict[str, object]:
    total: int | None = None
    try:
        with open("/proc/meminfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("MemTotal:"):
                    total = int(line.split()[1]) * 1024  # reported in KiB
                    break
    except (OSError, ValueError, IndexError):
        total = None
    if total is None:
        try:
            total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError):
            reason = not_available("neither /proc/meminfo nor sysconf gives it")
            return {"ram_total_bytes": reason, "ram_total_GiB": reason}
    return {"ram_total_bytes": total, "ram_total_GiB": round(total / GIB, 2)}


# --- GPUs --------------------------------------------------------------------------------------


def _gpus() -> dict[str, object]:
    """GPUs as the driver sees them (NVML), and as torch sees them (CUDA_VISIBLE_DEVICES applies).

    torch is imported only when NVML reports a GPU or torch is already loaded: importing it costs
    over a second, and without an NVIDIA driver torch cannot see a CUDA device anyway.
    """
    fields = _nvml()
    nvml_found_gpu = isinstance(fields["gpu_count"], int) and fields["gpu_count"] > 0
    fields["torch_cuda_devices"] = _torch_cuda_devices(nvml_found_gpu)
    return fields


def _nvml() -> dict[str, object]:
    try:
        import pynvml
    except ImportError:
        reason = not_available("nvidia-ml-py is not installed")
        return dict.fromkeys(
            ("gpu_count", "gpus", "gpu_driver_version", "cuda_driver_version"), reason
        )
    try:
        pynvml.nvmlInit()
    except Exception as exc:  # NVMLError subclasses, or OSError from a broken library
        reason = not_available(f"NVML: {exc}")
        return dict.fromkeys(
            ("gpu_count", "gpus", "gpu_driver_version", "cuda_driver_version"), reason
        )
    try:
        fields: dict[str, object] = {
            "gpu_count": _nvml_call(pynvml.nvmlDeviceGetCount),
            "gpus": [],
            "gpu_driver_version": _text(_nvml_call(pynvml.nvmlSystemGetDriverVersion)),
        }
        cuda = _nvml_call(pynvml.nvmlSystemGetCudaDriverVersion)
        # NVML encodes CUDA 12.4 as 12040.
        fields["cuda_driver_version"] = (
            f"{cuda // 1000}.{cuda % 1000 // 10}" if isinstance(cuda, int) else cuda
        )
        count = fields["gpu_count"]
        if isinstance(count, int):
            fields["gpus"] = [_nvml_gpu(pynvml, index) for index in range(count)]
        else:
            fields["gpus"] = count
        return fields
    finally:
        with contextlib.suppress(Exception):  # best effort: the answers are already read
            pynvml.nvmlShutdown()


def _nvml_gpu(pynvml: object, index: int) -> dict[str, object]:
    handle = _nvml_call(pynvml.nvmlDeviceGetHandleByIndex, index)  # type: ignore[attr-defined]
    if isinstance(handle, str):
        return {"index": index, "name": handle}
    memory = _nvml_call(pynvml.nvmlDeviceGetMemoryInfo, handle)  # type: ignore[attr-defined]
    total = getattr(memory, "total", None)
    return {
        "index": index,
        "name": _text(_nvml_call(pynvml.nvmlDeviceGetName, handle)),  # type: ignore[attr-defined]
        "memory_total_bytes": int(total) if total is not None else memory,
        "memory_total_GiB": round(int(total) / GIB, 2) if total is not None else memory,
        "uuid": _text(_nvml_call(pynvml.nvmlDeviceGetUUID, handle)),  # type: ignore[attr-defined]
    }


def _nvml_call(function: object, *args: object) -> object:
    """One NVML query; a failure becomes that field's "not available" rather than the table's."""
    try:
        return function(*args)  # type: ignore[operator]
    except Exception as exc:
        return not_available(f"NVML: {exc}")


def _text(value: object) -> object:
    """Older NVML bindings return bytes."""
    return value.decode(errors="replace") if isinstance(value, bytes) else value


def _torch_cuda_devices(nvml_found_gpu: bool) -> object:
    if "torch" not in sys.modules and not nvml_found_gpu:
        if importlib.util.find_spec("torch") is None:
            return NOT_INSTALLED
        return not_available("NVML reports no GPU, so torch was not asked")
    try:
        import torch
    except Exception as exc:  # a broken install must not fail the run
        return not_available(f"cannot import torch: {exc}")
    try:
        if not torch.cuda.is_available():
            return not_available("torch sees no CUDA device")
        return [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    except Exception as exc:
        return not_available(f"torch.cuda: {exc}")


# --- storage -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Mount:
    """One line of /proc/self/mountinfo (see proc(5))."""

    mount_point: str
    major_minor: str
    root: str
    fs_type: str
    source: str
    mount_options: str
    super_options: str


_OCTAL_ESCAPE = re.compile(r"\\([0-7]{3})")


def _unescape(field: str) -> str:
    """mountinfo writes space, tab, newline and backslash as \\040, \\011, \\012, \\134."""
    return _OCTAL_ESCAPE.sub(lambda match: chr(int(match.group(1), 8)), field)


def parse_mountinfo_line(line: str) -> Mount | None:
    """A ``Mount``, or None for a line that does not follow the format."""
    fields = line.split()
    try:
        separator = fields.index("-", 6)
        fs_type, source, super_options = fields[separator + 1 : separator + 4]
    except ValueError:
        return None
    return Mount(
        mount_point=_unescape(fields[4]),
        major_minor=fields[2],
        root=_unescape(fields[3]),
        fs_type=fs_type,
        source=_unescape(source),
        mount_options=fields[5],
        super_options=super_options,
    )


def find_mount(path: Path, mountinfo: str) -> Mount | None:
    """The mount holding ``path`` (absolute, resolved): the longest mount point that contains it.
    On a tie the later line wins, because a later mount on the same point hides the earlier one."""
    target = str(path)
    best: Mount | None = None
    for line in mountinfo.splitlines():
        mount = parse_mountinfo_line(line)
        if mount is None:
            continue
        point = mount.mount_point
        inside = target == point or point == "/" or target.startswith(point.rstrip("/") + "/")
        if inside and (best is None or len(point) >= len(best.mount_point)):
            best = mount
    return best


def existing_parent(path: Path) -> Path:
    """``path`` resolved, or its nearest ancestor that exists (a dataset not yet generated)."""
    candidate = Path(os.path.abspath(path))
    # os.path never raises here (permission denied reads as "does not exist"; loops stop).
    while not os.path.exists(candidate) and candidate != candidate.parent:
        candidate = candidate.parent
    return Path(os.path.realpath(candidate))


def _storage(dataset_path: Path) -> dict[str, object]:
    resolved = existing_parent(dataset_path)
    fields: dict[str, object] = {
        "storage_path": str(dataset_path),
        "storage_resolved_path": str(resolved),
    }
    keys = (
        "storage_mount_point",
        "storage_fs_type",
        "storage_mount_options",
        "storage_super_options",
        "storage_source",
        "storage_nfs_source",
        "storage_nfs_server",
        "storage_nfs_export",
    )
    try:
        mountinfo = MOUNTINFO.read_text(encoding="utf-8", errors="surrogateescape")
    except OSError as exc:
        reason = f"{MOUNTINFO}: {exc.strerror or exc}"
        fields.update(dict.fromkeys(keys, not_available(reason)))
        fields.update(_no_block_device(reason))
        return fields
    mount = find_mount(resolved, mountinfo)
    if mount is None:
        reason = f"no mount in {MOUNTINFO} holds {resolved}"
        fields.update(dict.fromkeys(keys, not_available(reason)))
        fields.update(_no_block_device(reason))
        return fields
    fields.update(
        {
            "storage_mount_point": mount.mount_point,
            "storage_fs_type": mount.fs_type,
            "storage_mount_options": mount.mount_options,
            "storage_super_options": mount.super_options,
            "storage_source": mount.source,
        }
    )
    fields.update(_nfs(mount))
    fields.update(_block_device(mount))
    return fields


def _nfs(mount: Mount) -> dict[str, object]:
    """server and export of an NFS mount; its source reads ``server:/export`` (IPv6 servers in
    brackets: ``[fd00::1]:/export``), so split at the last ``:`` that is outside brackets."""
    if not mount.fs_type.startswith("nfs"):
        reason = not_available(f"not an NFS mount ({mount.fs_type})")
        return dict.fromkeys(
            ("storage_nfs_source", "storage_nfs_server", "storage_nfs_export"), reason
        )
    server, sep, export = mount.source.rpartition(":/")
    if not sep:
        reason = not_available(f"NFS source {mount.source!r} is not server:/export")
        return {
            "storage_nfs_source": mount.source,
            "storage_nfs_server": reason,
            "storage_nfs_export": reason,
        }
    return {
        "storage_nfs_source": mount.source,
        "storage_nfs_server": server,
        "storage_nfs_export": "/" + export,
    }


_BLOCK_KEYS = (
    "storage_device",
    "storage_partition",
    "storage_device_model",
    "storage_device_size_bytes",
    "storage_device_size_GB",
    "storage_device_rotational",
    "storage_device_scheduler",
    "storage_device_components",
)


def _no_block_device(reason: str) -> dict[str, object]:
    return dict.fromkeys(_BLOCK_KEYS, not_available(reason))


def _block_device(mount: Mount) -> dict[str, object]:
    """Details of the disk under a mount, when it is a local block device.

    The device number in mountinfo finds it in /sys/dev/block; filesystems that report an
    anonymous number (btrfs) fall back to the source when that is a block device node. A partition
    is reported with its parent disk, whose queue holds the model, rotational flag and scheduler.
    """
    node = SYS_DEV_BLOCK / mount.major_minor
    if not node.exists() and mount.source.startswith("/"):
        try:
            st = os.stat(mount.source)
            if stat.S_ISBLK(st.st_mode):
                node = SYS_DEV_BLOCK / f"{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}"
        except OSError:
            pass
    if not node.exists():
        return _no_block_device(
            f"{mount.fs_type} from {mount.source!r} is not on a local block device"
        )
    device_dir = node.resolve()
    partition: object = not_available(f"{device_dir.name} is a whole disk")
    if (device_dir / "partition").exists():
        partition = device_dir.name
        device_dir = device_dir.parent
    disk = device_dir.name
    queue = SYS_BLOCK / disk / "queue"
    sectors = _read_sys(SYS_BLOCK / disk / "size")
    rotational = _read_sys(queue / "rotational")
    size: object = int(sectors) * SECTOR if sectors.isdigit() else not_available(sectors)
    slaves = SYS_BLOCK / disk / "slaves"
    try:
        components: object = sorted(entry.name for entry in slaves.iterdir())
    except OSError:
        components = []
    return {
        "storage_device": disk,
        "storage_partition": partition,
        "storage_device_model": _device_model(disk),
        "storage_device_size_bytes": size,
        "storage_device_size_GB": round(size / GB, 2) if isinstance(size, int) else size,
        "storage_device_rotational": rotational == "1" if rotational in ("0", "1") else rotational,
        "storage_device_scheduler": _scheduler(_read_sys(queue / "scheduler")),
        "storage_device_components": components,
    }


def _device_model(disk: str) -> str:
    """The model the kernel reports (NVMe, SCSI, SATA); device-mapper volumes report their name."""
    model = _read_sys(SYS_BLOCK / disk / "device" / "model")
    if not model.startswith(NOT_AVAILABLE) and model:
        return model
    dm_name = _read_sys(SYS_BLOCK / disk / "dm" / "name")
    if not dm_name.startswith(NOT_AVAILABLE) and dm_name:
        return f"device-mapper {dm_name}"
    return model or not_available(f"empty model for {disk}")


def _scheduler(line: str) -> str:
    """/sys/.../queue/scheduler lists all and brackets the active one: ``none [mq-deadline]``."""
    match = re.search(r"\[([^\]]+)\]", line)
    return match.group(1) if match else line


def _read_sys(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace").strip()
    except OSError as exc:
        return not_available(f"{path}: {exc.strerror or exc}")


# --- software ----------------------------------------------------------------------------------


def _software() -> dict[str, object]:
    uname = os.uname()
    software: dict[str, object] = {
        "os": _os_pretty_name(),
        "kernel": f"{uname.sysname} {uname.release}",
        "architecture": uname.machine,
        "python": f"{platform.python_version()} ({platform.python_implementation()})",
        "harness": harness.__version__,
    }
    for key, (distributions, module) in PACKAGES.items():
        software[key], distribution = _package_version(distributions, module)
        if key == "nvidia_dali":
            # DALI ships one package per CUDA major version; which one is part of the answer.
            software["nvidia_dali_package"] = distribution or software[key]
    software["torch_cuda_runtime"] = _torch_cuda_runtime()
    return software


def _package_version(distributions: tuple[str, ...], module: str) -> tuple[str, str | None]:
    """(version, distribution name). A module already imported answers for itself (that is the
    code that runs, even if metadata on the path disagrees); otherwise package metadata does, so
    that reading a version never costs an import."""
    loaded = sys.modules.get(module)
    version = getattr(loaded, "__version__", None) if loaded is not None else None
    for name in distributions:
        try:
            found = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
        return str(version or found), name
    if version:
        return str(version), None
    return NOT_INSTALLED, None


def _torch_cuda_runtime() -> object:
    """``torch.version.cuda``: the CUDA runtime torch was built with (None for CPU builds).

    Read from torch/version.py without importing torch, which would cost over a second."""
    loaded = sys.modules.get("torch")
    if loaded is not None:
        cuda = getattr(getattr(loaded, "version", None), "cuda", None)
        return cuda if cuda else not_available("torch is a CPU-only build")
    try:
        spec = importlib.util.find_spec("torch")
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        return NOT_INSTALLED
    version_file = Path(next(iter(spec.submodule_search_locations))) / "version.py"
    try:
        tree = ast.parse(version_file.read_text(encoding="utf-8"))
    except (OSError, SyntaxError, ValueError) as exc:
        return not_available(f"cannot read {version_file}: {exc}")
    for statement in tree.body:
        if isinstance(statement, ast.Assign):
            targets, value = statement.targets, statement.value
        elif isinstance(statement, ast.AnnAssign) and statement.value is not None:
            targets, value = [statement.target], statement.value
        else:
            continue
        if any(isinstance(t, ast.Name) and t.id == "cuda" for t in targets):
            if isinstance(value, ast.Constant) and isinstance(value.value, str):
                return value.value
            if isinstance(value, ast.Constant) and value.value is None:
                return not_available("torch is a CPU-only build")
    return not_available(f"no 'cuda' in {version_file}")


def _os_pretty_name() -> str:
    for candidate in (Path("/etc/os-release"), Path("/usr/lib/os-release")):
        try:
            text = candidate.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        for line in text.splitlines():
            if line.startswith("PRETTY_NAME="):
                value = line.partition("=")[2]
                try:
                    words = shlex.split(value)
                except ValueError:
                    words = [value.strip("\"'")]
                return " ".join(words) if words else not_available(f"empty in {candidate}")
        return not_available(f"no PRETTY_NAME in {candidate}")
    return not_available("no /etc/os-release")


def processor_name() -> str:
    """The CPU's model name (or why it is not known)."""
    return str(_cpu()["cpu_model"])


def environment_software() -> dict[str, str]:
    """The software table (versions of the OS, Python, torch, ...), values as text."""
    return {key: str(value) for key, value in _software().items()}
