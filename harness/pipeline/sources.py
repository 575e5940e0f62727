"""Where samples come from: one source per dataset shape, each reading (image, mask) crops.

A source is built in the main process from the manifests (plain data, cheap to pickle into
DataLoader workers) and opens its files lazily, once per worker. ``load`` returns the crop, its
mask and the bytes it asked the storage for, which the run compares with what the kernel reports.

Which sample to read comes from the sample plan (``harness.pipeline.plan``); how the bytes asked
for are counted, from the accounting (``harness.pipeline.accounting``).
"""

from __future__ import annotations

import io
import math
import mmap
import os
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from harness.data import cache as frame_cache
from harness.data import tfrecord
from harness.data.cache import CacheManifest
from harness.data.labels import derive_mask
from harness.data.manifest import DatasetManifest
from harness.data.pictures import checked_classes, decode_mask, decode_rgb, to_rgb
from harness.data.tracks import Tracks
from harness.data.video_reader import VideoReader
from harness.errors import HarnessError, one_line
from harness.pagecache import resident_mapped, resident_vector
from harness.pipeline.accounting import (
    PAGE,
    CountingFile,
    PageLedger,
    Reads,
    SharedPageLedger,
    absent_pages,
    pages_touched,
)
from harness.pipeline.batch import placeholder_arrays
from harness.pipeline.plan import FileInfo, SampleRef
from harness.pipeline.readahead import ReadAhead, read_file
from harness.scenario import Scenario


class Source:
    """Reads one sample. Subclasses open files lazily so that each worker has its own handles;
    the ledger of pages asked for is the host's (``share_ledger``), else this process's own."""

    files: list[FileInfo]
    _ledger: PageLedger | None = None
    read_ahead: ReadAhead | None = None  # this process's I/O threads, where the scenario has them
    ledger_path: str | None = None  # the host's shared ledger, which workers open again

    @property
    def ledger(self) -> PageLedger:
        if self._ledger is None:
            path = self.ledger_path
            self._ledger = PageLedger() if path is None else SharedPageLedger(Path(path))
        return self._ledger

    def share_ledger(self, path: Path, *, create: bool) -> None:
        """Count first-time pages in the host's ledger at ``path``, created here (``create``:
        one process per host, before the others join it) or joined."""
        self._ledger = (
            SharedPageLedger.create(path, self.data_files()) if create else SharedPageLedger(path)
        )
        self.ledger_path = str(path)

    def __getstate__(self) -> dict[str, Any]:
        # Workers start with nothing open and nothing asked for: handles and ledgers stay home.
        state = dict(self.__dict__)
        for key in ("_ledger", "_maps", "_open", "_last", "_tracks", "_masks", "read_ahead"):
            state.pop(key, None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._reset()

    def _reset(self) -> None:
        """Empty the per-process state (open files, caches)."""

    def load(self, ref: SampleRef, crop: int) -> tuple[np.ndarray, np.ndarray, Reads]:
        """(image crop HxWx3 uint8, mask crop HxW uint8, bytes asked of the storage)."""
        raise NotImplementedError

    def read(self, ref: SampleRef, crop: int) -> Reads:
        """The reads of ``load`` and nothing else (emulated preprocessing): the same files, byte
        ranges, order and read-ahead, counted alike, without decoding or cropping."""
        raise HarnessError(f"{self.describe(ref)}: this source cannot read without decoding")

    def data_format(self) -> str:
        """What its samples are decoded from (jpeg, png, npy ...), for preprocessing profiles."""
        raise NotImplementedError

    def describe(self, ref: SampleRef) -> str:
        """The file a sample comes from, for error messages and corrupt-file counts."""
        raise NotImplementedError

    def whole_files(self, ref: SampleRef) -> list[Path]:
        """The files a sample reads whole, which I/O threads may read ahead of it; none where
        a sample reads parts of files (memory-mapped crops, video decode)."""
        return []

    def read_whole(self, path: Path, reads: Reads) -> bytes:
        """A whole file's bytes, from the read-ahead threads when they have it, counted."""
        taken = self.read_ahead.take(path) if self.read_ahead is not None else None
        data, _began, resident = read_file(path) if taken is None else taken
        absent = None if resident is None else absent_pages(resident, 0)
        reads.add(len(data), self.ledger.note_range(str(path), 0, len(data), len(data), absent))
        return data

    def data_files(self) -> list[Path]:
        """Every file the training reads: what page-cache conditions act on."""
        raise NotImplementedError


class _DatasetSource(Source):
    """A source over the files a dataset manifest lists (generated or brought: images or
    videos), whose masks are mask files, track tables or derived from the pixels by a rule."""

    def __init__(self, root: Path, manifest: DatasetManifest) -> None:
        self.root = root
        self.records = manifest["files"]
        self.labels = manifest["labels"]
        self.classes = int(manifest["classes"])

    def describe(self, ref: SampleRef) -> str:
        return str(self.root / self.records[ref.file]["path"])

    def data_files(self) -> list[Path]:
        names = [r["path"] for r in self.records] + [r["mask"] for r in self.records if "mask" in r]
        return [self.root / name for name in names]

    def derived_mask(self, image: np.ndarray) -> np.ndarray:
        """The mask of ``image`` by the dataset's label rule (datasets without mask files)."""
        return derive_mask(image, self.labels.removeprefix("derived:"), self.classes)


# --- image collage ------------------------------------------------------------------------------


class CollageSource(_DatasetSource):
    """Crops from large images: ``npy`` through a memory map (only the pages under the crop are
    read, random access advised so that the kernel reads nothing around them); PNG and JPEG are
    read and decoded whole, as they must be."""

    def __init__(self, root: Path, manifest: DatasetManifest) -> None:
        super().__init__(root, manifest)
        self.files = [FileInfo(r["width"], r["height"], 1) for r in self.records]
        self._reset()

    def _reset(self) -> None:
        self._maps: OrderedDict[str, _MappedNpy] = OrderedDict()

    def whole_files(self, ref: SampleRef) -> list[Path]:
        record = self.records[ref.file]
        names = [record["path"]] + ([record["mask"]] if "mask" in record else [])
        return [self.root / name for name in names if not name.endswith(".npy")]

    def load(self, ref: SampleRef, crop: int) -> tuple[np.ndarray, np.ndarray, Reads]:
        record = self.records[ref.file]
        rows, cols = slice(ref.top, ref.top + crop), slice(ref.left, ref.left + crop)
        reads = Reads()
        image = to_rgb(self._read(self.root / record["path"], rows, cols, reads, decode_rgb))
        if "mask" in record:
            mask_file = self.root / record["mask"]
            mask = self._read(mask_file, rows, cols, reads, decode_mask)
            mask = checked_classes(mask, self.classes, mask_file)
        else:
            mask = self.derived_mask(image)
        return np.ascontiguousarray(image), np.ascontiguousarray(mask), reads

    def read(self, ref: SampleRef, crop: int) -> Reads:
        record = self.records[ref.file]
        rows, cols = slice(ref.top, ref.top + crop), slice(ref.left, ref.left + crop)
        reads = Reads()
        names = [record["path"]] + ([record["mask"]] if "mask" in record else [])
        for name in names:  # a derived mask reads nothing more
            path = self.root / name
            if path.suffix == ".npy":
                self._read(path, rows, cols, reads, None)  # the crop's copy is the read
            else:
                self.read_whole(path, reads)
        return reads

    def data_format(self) -> str:
        return Path(self.records[0]["path"]).suffix.lstrip(".").lower() if self.records else ""

    def _read(self, path: Path, rows: slice, cols: slice, reads: Reads, decode: Any) -> np.ndarray:
        if path.suffix != ".npy":
            return decode(self.read_whole(path, reads), path)[rows, cols]
        mapped = self._map(path, reads)
        mapped.check_whole(path)  # a page past a cut file's end would kill the process: SIGBUS
        array = mapped.array
        pages = pages_touched(array, rows, cols)
        absent = _absent_mapped(array, pages)  # before the copy faults them in
        crop = np.array(array[rows, cols])  # copies, which faults in exactly the pages touched
        size = array.offset + array.nbytes if isinstance(array, np.memmap) else array.nbytes
        reads.add(pages.size * PAGE, self.ledger.note(str(path), pages, size, absent))
        return crop

    def _map(self, path: Path, reads: Reads) -> _MappedNpy:
        key = str(path)
        mapped = self._maps.get(key)
        if mapped is None:
            mapped = self._maps[key] = _map_npy(path)
            size = mapped.array.offset + mapped.array.nbytes
            absent = np.arange(1) if mapped.header_absent else None
            reads.add(PAGE, self.ledger.note_range(key, 0, PAGE, size, absent))  # the header
            if len(self._maps) > 4096:  # bound open maps per worker on huge datasets
                self._maps.popitem(last=False)
        else:
            self._maps.move_to_end(key)
        return mapped


@dataclass
class _MappedNpy:
    """A memory-mapped ``.npy`` array and the file it maps (device, inode), to check that the
    file still holds every byte of it before a crop touches its pages."""

    array: np.memmap
    device: int
    inode: int
    header_absent: bool  # its first page was out of the page cache when the header was read

    def check_whole(self, path: Path) -> None:
        """Named here, one line, when the file was cut short since it was mapped: a page past
        its new end would be a SIGBUS, the DataLoader worker killed without a word ("out of
        shared memory"). A file deleted or replaced since is not this one: its map still
        reads the bytes it mapped."""
        try:
            found = os.stat(path)
        except OSError:
            return
        if (found.st_dev, found.st_ino) == (self.device, self.inode):
            _check_size(path, found.st_size, self.array.offset + self.array.nbytes)


def _check_size(path: Path, size: int, expected: int) -> None:
    if size < expected:
        raise HarnessError(f"{path}: truncated: {size} bytes, the header says {expected}")


def _map_npy(path: Path) -> _MappedNpy:
    """Memory-map a ``.npy`` array so that only the pages a crop lies on are read: the header is
    read with read-ahead off (``np.load`` would read ahead up to a few hundred kB of pixels), and
    the mapping is advised random (no read-around on page faults). A file shorter than its
    header's shape is named before it is mapped."""
    try:
        with open(path, "rb", buffering=0) as handle:
            os.posix_fadvise(handle.fileno(), 0, 0, os.POSIX_FADV_RANDOM)
            header_absent = _first_page_absent(handle.fileno())
            header = handle.read(PAGE)
            stream = io.BytesIO(header)
            shape, fortran, dtype = _npy_header(stream)
            offset = stream.tell()
            found = os.fstat(handle.fileno())
        if fortran or dtype.hasobject:
            raise ValueError("expected a C-ordered array of plain numbers")
        _check_size(path, found.st_size, offset + math.prod(shape) * dtype.itemsize)
        array = np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape)
    except (OSError, ValueError) as exc:
        raise HarnessError(f"{path}: cannot map: {one_line(exc)}") from None
    handle_map = getattr(array, "_mmap", None)
    if handle_map is not None and hasattr(mmap, "MADV_RANDOM"):
        handle_map.madvise(mmap.MADV_RANDOM)
    return _MappedNpy(array, found.st_dev, found.st_ino, header_absent)


def _first_page_absent(fd: int) -> bool:
    try:
        return resident_vector(fd, 0, PAGE)[:1] == b"\x00"
    except OSError:  # a file system that cannot say: not counted as a miss
        return False


def _absent_mapped(array: np.ndarray, pages: np.ndarray) -> np.ndarray | None:
    """Which of ``pages`` (file page numbers, sorted) of a memory-mapped array are out of the
    page cache now; None where that cannot be asked (not a mapping, or mincore refused)."""
    if not isinstance(array, np.memmap) or pages.size == 0:
        return None
    # np.memmap maps from the page holding ``offset``: file byte b sits at data - offset + b.
    base = array.ctypes.data - array.offset
    first, last = int(pages[0]), int(pages[-1])
    try:
        resident = resident_mapped(base + first * PAGE, (last - first + 1) * PAGE)
    except OSError:
        return None
    absent = absent_pages(resident, first)
    return absent[np.isin(absent, pages, assume_unique=True)]


def _npy_header(stream: io.BytesIO) -> tuple[tuple[int, ...], bool, np.dtype]:
    version = np.lib.format.read_magic(stream)
    if version == (1, 0):
        return np.lib.format.read_array_header_1_0(stream)
    return np.lib.format.read_array_header_2_0(stream)


# Parsed ``.npy`` headers by their bytes: the files of a frame cache share a handful of headers,
# and NumPy parses each one with ``ast.literal_eval``, a tenth of a sample's CPU on a fast path.
_NPY_HEADERS: dict[bytes, tuple[tuple[int, ...], np.dtype, int]] = {}


def _array_from_npy_bytes(data: bytes, path: Path) -> np.ndarray:
    """The array in the bytes of a whole ``.npy`` file, without copying them again."""
    try:
        header = _npy_header_bytes(data)
        known = _NPY_HEADERS.get(header)
        if known is None:
            stream = io.BytesIO(header)
            shape, fortran, dtype = _npy_header(stream)
            if fortran or dtype.hasobject:
                raise ValueError("expected a C-ordered array of plain numbers")
            known = (shape, dtype, len(header))
            if len(_NPY_HEADERS) < 256:
                _NPY_HEADERS[header] = known
        shape, dtype, offset = known
        count = math.prod(shape)
        _check_size(path, len(data), offset + count * dtype.itemsize)
        return np.frombuffer(data, dtype=dtype, count=count, offset=offset).reshape(shape)
    except ValueError as exc:
        raise HarnessError(f"{path}: corrupt array: {one_line(exc)}") from None


def _npy_header_bytes(data: bytes) -> bytes:
    """The magic string, version, length and header dictionary of a ``.npy`` file's bytes."""
    if data[:6] != b"\x93NUMPY" or len(data) < 12:
        raise ValueError("not a .npy file (no magic string)")
    if data[6] == 1:
        end = 10 + int.from_bytes(data[8:10], "little")
    else:
        end = 12 + int.from_bytes(data[8:12], "little")
    if end > len(data):
        raise ValueError("truncated header")
    return data[:end]


def _decode_picture(data: bytes, path: Path) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as picture:
            return np.asarray(picture)
    except (OSError, UnidentifiedImageError, SyntaxError) as exc:
        raise HarnessError(f"{path}: corrupt or truncated image: {exc}") from None


# --- video, decoded on the fly ------------------------------------------------------------------


@dataclass
class _OpenVideo:
    reader: VideoReader
    handle: CountingFile
    frames: Any = None  # the decoding iterator, kept to continue without a seek
    last: int = -2  # index of the last frame it produced


class DecodedVideoSource(_DatasetSource):
    """Random frames decoded from the compressed videos with PyAV: seek to the keyframe at or
    before the frame, decode forward. A worker keeps its last readers open, and a request for
    the frame right after the last one continues decoding without a seek."""

    MAX_OPEN = 8

    def data_format(self) -> str:
        return str(self.records[0].get("codec", "video")) if self.records else "video"

    def __init__(self, root: Path, manifest: DatasetManifest, decoder_threads: int) -> None:
        super().__init__(root, manifest)
        self.threads = decoder_threads
        self.files = [FileInfo(r["width"], r["height"], r["frames"]) for r in self.records]
        self._reset()

    def _reset(self) -> None:
        self._open: OrderedDict[int, _OpenVideo] = OrderedDict()
        self._tracks: dict[int, Tracks] = {}
        self._masks: dict[int, VideoReader] = {}

    def _video(self, file: int) -> _OpenVideo:
        video = self._open.get(file)
        if video is None:
            path = self.root / self.records[file]["path"]
            handle = CountingFile(path, self.ledger)
            record = self.records[file]
            reader = VideoReader(path, self.threads, file=handle, timestamps=record.get("pts"))
            video = self._open[file] = _OpenVideo(reader, handle)
            while len(self._open) > self.MAX_OPEN:
                old = self._open.popitem(last=False)[1]
                old.reader.close()
                old.handle.close()
        self._open.move_to_end(file)
        return video

    def _frame(self, file: int, index: int) -> tuple[np.ndarray, Reads]:
        video = self._video(file)  # opening reads the header: those bytes count for this sample
        if video.frames is None or video.last != index - 1:
            video.frames = video.reader.frames(index)
        for found, image in video.frames:
            if found == index:
                video.last = index
                reads, video.handle.reads = video.handle.reads, Reads()
                return image, reads
        video.frames, video.last = None, -2
        raise HarnessError(f"{video.reader.path}: frame {index} not found (the video is shorter)")

    def mask(self, file: int, index: int, image: np.ndarray) -> np.ndarray:
        """The class mask of frame ``index`` of video ``file`` (whole frame): drawn from its
        track table, read from its mask video, or derived from ``image`` by the label rule."""
        record = self.records[file]
        if "tracks" in record:
            tracks = self._tracks.get(file)
            if tracks is None:
                tracks = self._tracks[file] = Tracks.load(self.root / record["tracks"])
            return tracks.mask(index)
        if "mask" in record:
            reader = self._masks.get(file)
            if reader is None:
                reader = self._masks[file] = VideoReader(
                    self.root / record["mask"], timestamps=record.get("mask_pts")
                )
            for _found, mask in reader.frames(index, index + 1, pixel_format="gray"):
                return checked_classes(mask, self.classes, reader.path)
            raise HarnessError(f"{reader.path}: mask frame {index} not found")
        return self.derived_mask(image)

    def load(self, ref: SampleRef, crop: int) -> tuple[np.ndarray, np.ndarray, Reads]:
        image, reads = self._frame(ref.file, ref.frame)
        mask = self.mask(ref.file, ref.frame, image)
        rows, cols = slice(ref.top, ref.top + crop), slice(ref.left, ref.left + crop)
        return (
            np.ascontiguousarray(image[rows, cols]),
            np.ascontiguousarray(mask[rows, cols]),
            reads,
        )


# --- video, from the frame cache ----------------------------------------------------------------


class CachedVideoSource(Source):
    """Random frames read from the frame cache: each frame and mask file is read whole (one
    request of the file's size), then decoded when it is JPEG or PNG, and cropped."""

    def __init__(self, cache_dir: Path, manifest: CacheManifest) -> None:
        self.cache_dir = cache_dir
        self.videos = manifest["videos"]
        self.format = manifest["format_name"]
        self.segment_frames = int(manifest["segment_frames"])
        self.files = [FileInfo(v["width"], v["height"], v["frames"]) for v in self.videos]

    def _paths(self, file: int, index: int) -> tuple[Path, Path]:
        video = self.videos[file]["id"]
        return (
            frame_cache.frame_path(self.cache_dir, video, index, self.segment_frames, self.format),
            frame_cache.mask_path(self.cache_dir, video, index, self.segment_frames, self.format),
        )

    def describe(self, ref: SampleRef) -> str:
        return str(self._paths(ref.file, ref.frame)[0])

    def whole_files(self, ref: SampleRef) -> list[Path]:
        return list(self._paths(ref.file, ref.frame))

    def data_files(self) -> list[Path]:
        return [
            path
            for file, video in enumerate(self.videos)
            for index in range(video["frames"])
            for path in self._paths(file, index)
        ]

    def read(self, ref: SampleRef, crop: int) -> Reads:
        reads = Reads()
        for path in self._paths(ref.file, ref.frame):
            try:
                self.read_whole(path, reads)
            except FileNotFoundError:
                raise HarnessError(f"{path}: missing from the frame cache") from None
        return reads

    def data_format(self) -> str:
        return str(self.format)

    def load(self, ref: SampleRef, crop: int) -> tuple[np.ndarray, np.ndarray, Reads]:
        frame_file, mask_file = self._paths(ref.file, ref.frame)
        rows, cols = slice(ref.top, ref.top + crop), slice(ref.left, ref.left + crop)
        reads = Reads()
        image = self._read_whole(frame_file, reads)
        mask = self._read_whole(mask_file, reads)
        return (
            np.array(image[rows, cols]),
            np.array(mask[rows, cols]),
            reads,
        )

    def _read_whole(self, path: Path, reads: Reads) -> np.ndarray:
        try:
            data = self.read_whole(path, reads)
        except FileNotFoundError:
            raise HarnessError(f"{path}: missing from the frame cache") from None
        if path.suffix == ".npy":
            return _array_from_npy_bytes(data, path)
        return _decode_picture(data, path)


# --- records (MLPerf Storage's workloads) --------------------------------------------------------


class RecordsSource(_DatasetSource):
    """Records read as DLIO's readers read them, never decoded: an ``npz`` or ``jpeg`` file whole
    (an npz file of several records once, for all of them, as DLIO's NPZ reader keeps it open),
    a TFRecord file record by record through its framing (header, data, CRC; both CRCs checked,
    as TensorFlow's reader checks them). A sample is a placeholder (zeros of the crop's shape):
    the compute is emulated."""

    def __init__(self, root: Path, manifest: DatasetManifest) -> None:
        super().__init__(root, manifest)
        self.format = str(manifest["params"]["format"])
        self.files = [FileInfo(0, 0, int(r["records"])) for r in self.records]
        self._reset()

    def _reset(self) -> None:
        self._last: tuple[int, bytes] | None = None  # the file read whole last, and its bytes
        self._open: tuple[int, int] | None = None  # (file, descriptor) of the TFRecord open
        self._offsets: dict[int, list[int]] = {}  # known record offsets per TFRecord file

    def _framed(self) -> bool:
        """Whether records are read one by one (TFRecord files of several records)."""
        return self.format == "tfrecord" and any(info.frames > 1 for info in self.files)

    def whole_files(self, ref: SampleRef) -> list[Path]:
        if self._framed() or (self._last is not None and self._last[0] == ref.file):
            return []
        return [self.root / self.records[ref.file]["path"]]

    def load(self, ref: SampleRef, crop: int) -> tuple[np.ndarray, np.ndarray, Reads]:
        reads = Reads()
        path = self.root / self.records[ref.file]["path"]
        if self._framed():
            self._read_record(ref.file, ref.frame, path, reads)
        elif self._last is None or self._last[0] != ref.file:
            data = self.read_whole(path, reads)
            expected = self.records[ref.file]["bytes"]
            if len(data) != expected:
                raise HarnessError(f"{path}: {len(data)} bytes, the dataset lists {expected}")
            if self.format == "tfrecord":  # one record: its framing checked as TensorFlow does
                header = data[: tfrecord.HEADER_BYTES]
                end = tfrecord.HEADER_BYTES + _record_length(path, header)
                _check_record(path, memoryview(data)[tfrecord.HEADER_BYTES : end], data[end:])
            self._last = (ref.file, data)
        return (*placeholder_arrays(crop), reads)

    def _read_record(self, file: int, record: int, path: Path, reads: Reads) -> None:
        """Read record ``record`` of a TFRecord file: the headers before it that this process has
        not walked yet, then its header, data and CRC, each read counted."""
        fd = self._descriptor(file, path)
        size = self.records[file]["bytes"]
        offsets = self._offsets.setdefault(file, [0])
        while len(offsets) <= record:  # walk the framing up to the record
            at = offsets[-1]
            length = _record_length(
                path, self._pread(fd, path, size, at, tfrecord.HEADER_BYTES, reads)
            )
            offsets.append(at + tfrecord.framed_bytes(length))
        at = offsets[record]
        header = self._pread(fd, path, size, at, tfrecord.HEADER_BYTES, reads)
        length = _record_length(path, header)
        body = self._pread(fd, path, size, at + tfrecord.HEADER_BYTES, length + 4, reads)
        if len(body) != length + tfrecord.FOOTER_BYTES or at + len(header) + len(body) > size:
            raise HarnessError(f"{path}: record {record} cut short (the file is truncated)")
        _check_record(path, memoryview(body)[:length], body[length:])
        if len(offsets) == record + 1:  # the next record starts here: no walk to reach it
            offsets.append(at + tfrecord.framed_bytes(length))

    def _descriptor(self, file: int, path: Path) -> int:
        if self._open is not None and self._open[0] == file:
            return self._open[1]
        if self._open is not None:
            os.close(self._open[1])
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        self._open = (file, fd)
        return fd

    def _pread(
        self, fd: int, path: Path, size: int, offset: int, length: int, reads: Reads
    ) -> bytes:
        first = offset - offset % PAGE
        try:
            resident = resident_vector(fd, first, offset + length - first)
            absent = absent_pages(resident, first // PAGE)
        except OSError:  # a file system that cannot say: not counted as misses
            absent = None
        data = os.pread(fd, length, offset)
        reads.add(len(data), self.ledger.note_range(str(path), offset, len(data), size, absent))
        return data


def _record_length(path: Path, header: bytes) -> int:
    try:
        return tfrecord.data_length(header)
    except ValueError as exc:
        raise HarnessError(f"{path}: {exc}") from None


def _check_record(path: Path, data: memoryview, footer: bytes) -> None:
    try:
        tfrecord.check_data(data, footer)
    except ValueError as exc:
        raise HarnessError(f"{path}: {exc}") from None


def build_source(
    scenario: Scenario, dataset_manifest: DatasetManifest, cache_manifest: CacheManifest | None
) -> Source:
    """The source a scenario reads from (its dataset kind and video mode)."""
    root = Path(scenario.dataset.path)
    if scenario.dataset.kind == "records":
        return RecordsSource(root, dataset_manifest)
    if scenario.dataset.kind == "image_collage":
        return CollageSource(root, dataset_manifest)
    if scenario.pipeline.mode == "cached":
        cache = scenario.pipeline.cache
        assert cache is not None and cache_manifest is not None
        return CachedVideoSource(Path(cache.path), cache_manifest)
    return DecodedVideoSource(root, dataset_manifest, scenario.pipeline.decoder_threads)
