"""The typed, frozen scenario model: what a scenario, a suite and their sections may hold.

Every count and size has an upper bound that holds on any machine, with its reason in the message
(CI validates scenarios on machines that will not run them); limits relative to the machine that
runs a scenario are checked when the run starts (``harness.scenario.machine``). Every field has a
description: ``harness validate --schema`` prints them for editors, and docs/scenario-reference.md
is generated from them (``harness.scenario.reference``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

from annotated_types import GroupedMetadata
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator
from pydantic.fields import FieldInfo
from pydantic.json_schema import JsonDict

from harness.collect.promseries import DEFAULT_METRICS, label_matcher, parse_selector
from harness.errors import one_line
from harness.registry import BACKENDS, COLLECTOR_NAMES, DEFAULT_COLLECTORS
from harness.scenario.capacity_settings import CapacitySettings
from harness.text import unsafe_character

BACKEND_NAMES = BACKENDS.names  # the schema's choices; the backends themselves load lazily


def _at_most(limit: float, reason: str) -> AfterValidator:
    shown = str(int(limit)) if float(limit).is_integer() else str(limit)

    def check(value: float) -> float:
        if value > limit:
            raise ValueError(f"at most {shown} ({reason}), got {one_line(repr(value), 60)}")
        return value

    return AfterValidator(check)


def _limit_schema(limit: float, reason: str) -> JsonDict:
    # The upper bound is checked by _at_most (for its message, which names the reason); the schema
    # states it for editors, with the reason beside it.
    return {"maximum": limit, "x-limit-reason": reason}


@dataclass(frozen=True)
class Count(GroupedMetadata):
    """Constraints of an integer from ``minimum`` to ``limit``, used as
    ``Annotated[int, Count(limit, reason)]``; ``reason`` says why the limit (in the message and in
    the JSON Schema)."""

    limit: int
    reason: str
    minimum: int = 1

    def __iter__(self) -> Iterator[FieldInfo | AfterValidator]:
        yield Field(ge=self.minimum, json_schema_extra=_limit_schema(self.limit, self.reason))
        yield _at_most(self.limit, self.reason)


@dataclass(frozen=True)
class Amount(GroupedMetadata):
    """Constraints of a float above zero, up to ``limit``: ``Annotated[float, Amount(...)]``."""

    limit: float
    reason: str

    def __iter__(self) -> Iterator[FieldInfo | AfterValidator]:
        yield Field(gt=0, json_schema_extra=_limit_schema(self.limit, self.reason))
        yield _at_most(self.limit, self.reason)


PATH_MAX = 4096  # Linux's longest path
PathText = Annotated[str, Field(min_length=1, max_length=PATH_MAX)]


def _printable_name(value: str) -> str:
    """A name reaches terminals, CI logs, HTML and XML: a control or bidirectional-override
    character in it could forge a line of a CI log (``\n::error``) or hide what it says."""
    where = unsafe_character(value)
    if where is not None:
        raise ValueError(
            f"a control or bidirectional-override character ({where}) cannot be in a name"
        )
    return value


Name = Annotated[str, Field(min_length=1, max_length=200), AfterValidator(_printable_name)]
Description = Annotated[str, Field(max_length=20_000)]
Percent = Annotated[float, Field(ge=0, le=100)]
Workers = Annotated[int, Count(1024, "processes or threads on one host")]
MAX_SIDE = 65_535  # the largest side a JPEG can have; PNG and npy files here use the same bound
Side = Annotated[int, Count(MAX_SIDE, "the largest side a JPEG image can have")]
VideoSide = Annotated[
    int, Count(8192, "the largest frame side of H.264 and HEVC levels (8192x4320)")
]
Steps = Annotated[int, Count(10**9, "a billion steps")]
ClassCount = Annotated[int, Field(ge=2, le=255)]
Seed = Annotated[int, Field(ge=0, lt=2**63)]
JpegQuality = Annotated[int, Field(ge=1, le=100)]

ImageFormat = Literal["npy", "png", "jpeg"]
VideoCodec = Literal["h264", "hevc", "vp9", "mjpeg"]
LabelRule = Literal["luma_bins"]
# pool: a few distinct images or video segments, repeated (disk-bound); full: every one unique
Uniqueness = Literal["pool", "full"]
DatasetSize = Literal["5x-ram"]  # MLPerf Storage's rule: at least 5x the clients' RAM


class Model(BaseModel):
    """Base of every scenario section: immutable, unknown keys rejected, no silent coercion."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


# --- dataset ------------------------------------------------------------------------------------

_SEED = (
    "Seed of every random choice of the generator: the same seed and settings give the same files."
)
_GENERATE_WORKERS = (
    "Processes that generate files in parallel; unset: every core given to the harness."
)
_SIZE = (
    "5x-ram sizes the dataset at five times the clients' RAM (MLPerf Storage's rule, so that the "
    "page cache cannot hold it; set the RAM with datagen --client-ram and --hosts)"
)


class CollageGenerate(Model):
    """Parameters of the synthetic image collage (large images of textured objects)."""

    images: (
        Annotated[int, Count(10_000_000, "ten million files; the study's collage has 1,300")] | None
    ) = Field(None, description="Number of images to generate; set this or size, not both.")
    width: Side = Field(description="Width of each image, in pixels.")
    height: Side = Field(description="Height of each image, in pixels.")
    classes: ClassCount = Field(
        5,
        description="Number of classes, the background included: one hue and pattern family each.",
    )
    objects_per_image: Annotated[int, Count(100_000, "objects drawn on one image")] = Field(
        40, description="Textured objects drawn on each image, each with its exact class mask."
    )
    format: ImageFormat = Field(
        "npy",
        description="File format of the images: npy (raw uint8, read through a memory map so "
        "that a crop reads only its rows), png or jpeg. Masks are always lossless.",
    )
    jpeg_quality: JpegQuality = Field(90, description="JPEG quality (1 to 100), for format jpeg.")
    seed: Seed = Field(0, description=_SEED)
    workers: Workers | None = Field(None, description=_GENERATE_WORKERS)
    unique: Uniqueness = Field(
        "pool",
        description="pool: each image is one of a few pooled canvases at an offset of its own plus "
        "a few fresh objects, so that generating runs at the disk's speed; full: every object "
        "drawn, for storage whose deduplication or compression could exploit the repetition "
        "(docs/datasets.md).",
    )
    size: DatasetSize | None = Field(None, description=_SIZE + " instead of images.")

    @model_validator(mode="after")
    def _count_or_size(self) -> CollageGenerate:
        _one_of(self, "images")
        return self

    def image_bytes(self) -> int:
        """Raw uint8 RGB bytes of one image (the size of an ``npy`` file, less its header)."""
        return self.width * self.height * 3


class VideoGenerate(Model):
    """Parameters of the synthetic surveillance videos (fixed background, moving objects)."""

    videos: Annotated[int, Count(1_000_000, "a million files")] = Field(
        description="Number of videos (cameras) to generate."
    )
    frames: Annotated[int, Count(10**9, "about a year at 30 fps")] | None = Field(
        None, description="Frames per video; set this or size, not both."
    )
    width: VideoSide = Field(description="Frame width, in pixels; even (4:2:0 chroma).")
    height: VideoSide = Field(description="Frame height, in pixels; even (4:2:0 chroma).")
    fps: Annotated[int, Field(ge=1, le=240)] = Field(30, description="Frames per second.")
    codec: VideoCodec = Field("h264", description="Video codec, encoded with PyAV.")
    gop: Annotated[int, Count(100_000, "frames between keyframes")] = Field(
        60,
        description="Frames between keyframes: a random frame costs about gop/2 decodes, so this "
        "sets the cost of a random seek.",
    )
    crf: Annotated[int, Field(ge=0, le=63)] | None = Field(
        23,
        description="Constant rate factor: quality, lower is better and larger; bitrate_kbps "
        "replaces it.",
    )
    bitrate_kbps: Annotated[int, Count(10_000_000, "10 Gb/s")] | None = Field(
        None, description="Target bitrate in kb/s (1000 bits a second); when set, replaces crf."
    )
    preset: Annotated[str, Field(min_length=1, max_length=32)] = Field(
        "veryfast",
        description="x264/x265 encoder preset (speed against size); ignored by other codecs.",
    )
    classes: ClassCount = Field(5, description="Number of classes, the background included.")
    objects: Annotated[int, Count(10_000, "objects in view at once")] = Field(
        4, description="Mean number of objects in view at once."
    )
    noise: Annotated[int, Field(ge=0, le=32)] = Field(
        3,
        description="Sensor noise amplitude, in 8-bit levels: noise makes frames less "
        "compressible, as a real camera's are.",
    )
    seed: Seed = Field(0, description=_SEED)
    workers: Workers | None = Field(None, description=_GENERATE_WORKERS)
    unique: Uniqueness = Field(
        "pool",
        description="pool: encode pool_segments segments per camera and repeat them bit for "
        "bit (remuxed), so that generating runs at the disk's speed; full: encode every frame, "
        "for storage whose deduplication or compression could exploit the repetition.",
    )
    pool_segments: Annotated[int, Count(10_000, "distinct segments encoded per camera")] = Field(
        4, description="Distinct segments encoded per camera under unique: pool."
    )
    segment_gops: Annotated[int, Count(10_000, "GOPs per segment: the unit of repetition")] = Field(
        1, description="Closed GOPs per pooled segment: the unit of repetition under unique: pool."
    )
    size: DatasetSize | None = Field(None, description=_SIZE + " instead of frames.")

    @model_validator(mode="after")
    def _even_sizes(self) -> VideoGenerate:
        _one_of(self, "frames")
        # 4:2:0 chroma subsampling, used by every codec here, needs even dimensions.
        for name in ("width", "height"):
            if getattr(self, name) % 2:
                raise ValueError(f"{name} must be even for 4:2:0 video, got {getattr(self, name)}")
        return self


RecordFormat = Literal["npz", "tfrecord", "jpeg"]
RecordBytes = Annotated[float, Amount(16e9, "16 GB: a record read whole into memory")]


class RecordsGenerate(Model):
    """Parameters of a records dataset: files of records of random bytes, as DLIO generates the
    workloads of MLPerf Storage (docs/mlperf.md)."""

    files: Annotated[int, Count(100_000_000, "a hundred million files")] | None = Field(
        None, description="Number of files to generate; set this or size, not both."
    )
    records_per_file: Annotated[int, Count(1_000_000, "records in one file")] = Field(
        1, description="Records in each file (DLIO's num_samples_per_file)."
    )
    record_bytes: RecordBytes = Field(
        description="Mean size of one record, in bytes (DLIO's record_length_bytes)."
    )
    record_bytes_stdev: Annotated[float, Field(ge=0, le=16e9)] = Field(
        0.0,
        description="Standard deviation of the record size, in bytes (DLIO's "
        "record_length_bytes_stdev): each file's record size is drawn from a normal "
        "distribution (seeded) and clipped at 1 byte, as DLIO draws one size per file.",
    )
    format: RecordFormat = Field(
        "npz",
        description="npz: numpy.savez of an uint8 array x (record bytes x records) and labels y, "
        "as DLIO writes unet3d; tfrecord: TFRecord framing (length, masked CRC32C, data, masked "
        "CRC32C) around raw record bytes; jpeg: one record of raw bytes per .jpg file (not a "
        "decodable picture: MLPerf Storage never decodes it).",
    )
    seed: Seed = Field(0, description=_SEED)
    workers: Workers | None = Field(None, description=_GENERATE_WORKERS)
    size: DatasetSize | None = Field(None, description=_SIZE + " instead of files.")

    @model_validator(mode="after")
    def _count_or_size(self) -> RecordsGenerate:
        _one_of(self, "files")
        if self.format == "jpeg" and self.records_per_file != 1:
            raise ValueError("format jpeg holds one record per file: records_per_file must be 1")
        return self


def _one_of(params: CollageGenerate | VideoGenerate | RecordsGenerate, count: str) -> None:
    if (getattr(params, count) is None) == (params.size is None):
        raise ValueError(f"set either {count} or size (5x-ram), not both and not neither")


_KIND = (
    "The kind of data: image_collage (large images, random crops), video (camera videos) or "
    "records (files of records of random bytes, MLPerf Storage's training workloads)."
)


class _DatasetBase(Model):
    kind: str = Field(description=_KIND)  # narrowed by each kind below; declared to print first
    path: PathText = Field(
        description="Folder the dataset lives in: the storage under test. A relative path "
        "resolves against the working directory."
    )
    classes: ClassCount | None = Field(
        None,
        description="Bring-your-own data only (required there): the number of classes in its "
        "masks, or produced by its label_rule.",
    )
    label_rule: LabelRule | None = Field(
        None,
        description="Bring-your-own data without masks: how labels are derived (luma_bins: from "
        "brightness; reports say so).",
    )

    @property
    def generated(self) -> bool:
        return getattr(self, "generate", None) is not None

    @model_validator(mode="after")
    def _generated_or_brought(self) -> _DatasetBase:
        if self.generated:
            for name in ("classes", "label_rule"):
                if getattr(self, name) is not None:
                    raise ValueError(
                        f"{name} is for bring-your-own data; a generated dataset sets "
                        "generate.classes instead"
                    )
        elif self.classes is None:
            raise ValueError(
                "bring-your-own data (no generate section) needs classes: the number of classes "
                "in its masks, or produced by its label_rule"
            )
        return self


_GENERATE = (
    "How harness datagen generates the dataset; leave it out to bring your own data from path."
)


class ImageCollageDataset(_DatasetBase):
    """A collage of large images with per-pixel class masks, generated or your own."""

    kind: Literal["image_collage"] = Field(description=_KIND)
    generate: CollageGenerate | None = Field(None, description=_GENERATE)


class VideoDataset(_DatasetBase):
    """Camera videos with per-frame class masks, generated or your own."""

    kind: Literal["video"] = Field(description=_KIND)
    generate: VideoGenerate | None = Field(None, description=_GENERATE)


class RecordsDataset(_DatasetBase):
    """Files of records read whole and never decoded (MLPerf Storage's training workloads):
    always generated, read only with emulated compute."""

    kind: Literal["records"] = Field(description=_KIND)
    generate: RecordsGenerate = Field(
        description="How harness datagen generates the records (a records dataset is always "
        "generated)."
    )


Dataset = Annotated[
    ImageCollageDataset | VideoDataset | RecordsDataset, Field(discriminator="kind")
]


# --- pipeline -----------------------------------------------------------------------------------


class FrameCache(Model):
    """Where and how the "cached" video mode stores decoded frames."""

    path: PathText = Field(
        description="Folder of the frame cache that harness cache builds: storage under test too. "
        "A relative path resolves against the working directory."
    )
    format: ImageFormat = Field(
        "npy", description="File format of the cached frames: npy (raw), png or jpeg."
    )
    jpeg_quality: JpegQuality = Field(90, description="JPEG quality (1 to 100), for format jpeg.")
    segment_frames: Annotated[int, Count(1_000_000, "frames per unit of work")] = Field(
        256,
        description="Frames per segment: the unit of parallel work, and of resume after a kill.",
    )
    workers: Workers | None = Field(
        None, description="Processes that build the cache; unset: every core given to the harness."
    )


class Pipeline(Model):
    """The input pipeline that feeds the training loop: backend, parallelism, batches, crops."""

    backend: Literal[BACKEND_NAMES] = Field(  # type: ignore[valid-type]
        "torch",
        description="Input pipeline: torch (a DataLoader), dali or nvdec, each imported only "
        "when a scenario asks for it.",
    )
    mode: Literal["decoded", "cached"] | None = Field(
        None,
        description="Video only (required there): decoded (frames decoded on the fly) or cached "
        "(frames read from the frame cache).",
    )
    workers: Annotated[int, Count(1024, "processes or threads on one host", minimum=0)] = Field(
        2,
        description="Parallel fetchers: DataLoader worker processes (torch; 0: in the training "
        "process), pipeline threads (dali), decoder threads with their own NVDEC sessions (nvdec).",
    )
    batch_size: Annotated[int, Count(65_536, "samples in one batch")] = Field(
        8, description="Samples per batch, per accelerator."
    )
    crop: Side = Field(256, description="Side of the square crops, in pixels.")
    shuffle: bool = Field(
        True, description="Random samples (true, the study's setting) or samples in file order."
    )
    prefetch_factor: Annotated[int, Count(1024, "batches in flight per worker")] = Field(
        2, description="Batches each worker keeps in flight; needs workers > 0."
    )
    decoder_threads: Annotated[int, Count(256, "decoding threads per worker")] = Field(
        1, description="Decoding threads per worker, for video decoded on the fly."
    )
    read_threads: Annotated[int, Count(64, "reads in flight per worker")] = Field(
        1,
        description="Synchronous whole-file reads each worker keeps in flight (torch backend; "
        "frame caches and PNG/JPEG collages): threads stand in for the workers a client with more "
        "cores would run, so that the storage, not the harness, sets the read rate.",
    )
    sequence_length: Annotated[int, Count(65_536, "consecutive frames per seek")] = Field(
        1,
        description="Video: consecutive frames taken from each random position (1: every frame "
        "is a random seek). Longer sequences amortise the seek to the keyframe, as DALI's video "
        "reader does.",
    )
    page_cache: Literal["cold", "warm"] = Field(
        "cold",
        description="cold: the dataset's files are evicted from the page cache before the run "
        "(checked with mincore), so the storage serves the reads; warm: they are read first.",
    )
    on_corrupt: Literal["skip", "fail"] = Field(
        "fail",
        description="A corrupt file ends the run with one line (fail), or is counted per file in "
        "the summary and skipped (skip).",
    )
    cache: FrameCache | None = Field(None, description="The frame cache; required by mode cached.")
    # --- emulated preprocessing (harness.pipeline.preprocess) ---
    preprocess: Literal["real", "emulated"] = Field(
        "real",
        description="real: decode, crop and collate each sample. emulated (needs training.compute "
        "emulated; torch backend): read exactly the bytes the real pipeline reads, then wait a "
        "per-sample preprocessing time drawn from preprocess_profile instead of decoding, at most "
        "preprocess_cores waits at once on the host; batches are placeholders of the right shape.",
    )
    preprocess_profile: PathText | None = Field(
        None,
        description="Emulated preprocessing (required there): a preprocessing profile file from "
        "harness calibrate --preprocess.",
    )
    preprocess_cores: Annotated[int, Count(65_536, "cores of one emulated client")] | None = Field(
        None,
        description="Emulated preprocessing: the emulated client's cores, the waits run at once "
        "on the host (training.server.cores per server where a server shape is set); unset: this "
        "host's cores.",
    )
    preprocess_speed: Annotated[float, Field(gt=0, le=1000)] = Field(
        1.0,
        description="Emulated preprocessing: the emulated client's per-core speed relative to "
        "the profile's CPU; the profile's times are divided by it (recorded in the run).",
    )


# --- training, collectors, thresholds -----------------------------------------------------------


class UNetConfig(Model):
    """Size of the U-Net the loop trains (and that an emulated run's profile was measured on)."""

    width: Annotated[int, Count(4096, "channels of the first level")] = Field(
        16, description="Channels of the first level; doubles at each level down."
    )
    depth: Annotated[int, Field(ge=1, le=7)] = Field(
        3, description="Levels of the U-Net (down and up again)."
    )


class ServerShape(Model):
    """One server of the emulated cluster (e.g. a DGX-1: 8 accelerators, 40 cores)."""

    accelerators: Annotated[int, Field(ge=1, le=1024)] = Field(
        description="Accelerators per server."
    )
    cores: Annotated[int, Count(65_536, "cores of one server")] = Field(
        description="CPU cores per server: the preprocessing waits one server runs at once."
    )


class Training(Model):
    """The training loop: the model, when to stop, the device, and real or emulated compute."""

    model: UNetConfig = Field(UNetConfig(), description="The U-Net's size.")
    steps: Steps | None = Field(
        None, description="Training steps to run, warm-up included; set this or duration_s."
    )
    duration_s: Annotated[float, Amount(31 * 86400, "31 days")] | None = Field(
        None, description="Seconds to train for, after the warm-up; set this or steps."
    )
    warmup_steps: Annotated[int, Count(10**9, "a billion steps", minimum=0)] = Field(
        5,
        description="Steps run before measuring (busy %, data-wait % and rates leave them out); "
        "less than steps.",
    )
    precision: Literal["auto", "fp32", "bf16"] = Field(
        "auto", description="Compute precision; auto: bf16 autocast on CUDA, fp32 on CPU."
    )
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="Where to train; auto: CUDA when a GPU is there, else the CPU."
    )
    optimizer: Literal["adamw", "sgd"] = Field("adamw", description="The optimizer.")
    lr: Annotated[float, Amount(100.0, "a learning rate")] = Field(
        1e-3, description="Learning rate."
    )
    eval_samples: Annotated[int, Count(1_000_000, "held-out samples", minimum=0)] = Field(
        32, description="Held-out samples the mIoU is measured on at the end (0: none)."
    )
    cpu_threads: Annotated[int, Count(4096, "threads on one host")] | None = Field(
        None,
        description="CPU training threads; unset: the cores left after the DataLoader workers "
        "(at least one), so that the loop and the workers do not fight over the same cores.",
    )
    seed: Seed = Field(0, description="Seed of the model's weights and of the sample order.")
    compute: Literal["real", "emulated"] = Field(
        "real",
        description="real: run the U-Net. emulated: each step waits for its batch as a real one "
        "does, then spends a compute time drawn from profile, so that a machine without the GPUs "
        "loads the storage as they would.",
    )
    profile: PathText | None = Field(
        None,
        description="Emulated compute (required there): a shipped profile's name (harness "
        "profiles) or a profile file from harness calibrate.",
    )
    profile_scaling: Literal["none", "flops"] = Field(
        "none",
        description="none: a profile measured for another batch, crop or model is refused; "
        "flops: its time is scaled by the ratio of training FLOPs per batch (optimistic for small "
        "models).",
    )
    accelerators: Annotated[int, Field(ge=1, le=1024)] | None = Field(
        None,
        description="Emulated accelerators on this host, one process each; unset: 1, or "
        "torchrun's --nproc-per-node under torchrun.",
    )
    sync: Literal["barrier", "none"] = Field(
        "barrier",
        description="barrier: the emulated accelerators vote on stopping with one all-reduce "
        "after each step, standing in for the gradient all-reduce (timed as barrier_pct); none: "
        "they do not wait for each other.",
    )
    server: ServerShape | None = Field(
        None,
        description="Emulated compute: the server the accelerators come in (harness capacity "
        "grows in whole servers); with emulated preprocessing each server's accelerators share "
        "its cores.",
    )
    collective_timeout_s: Annotated[float, Field(gt=0, le=86400)] = Field(
        120.0,
        description="Seconds after which a rank that died or stopped answering ends the run, "
        "with one line naming it.",
    )

    @model_validator(mode="after")
    def _one_stop_rule(self) -> Training:
        if self.compute == "emulated" and self.profile is None:
            raise ValueError(
                "training.compute emulated needs training.profile: a shipped profile "
                "(harness profiles) or a file from harness calibrate"
            )
        if self.compute == "real" and self.accelerators not in (None, 1):
            raise ValueError(
                "training.accelerators applies to training.compute emulated (real multi-GPU "
                "runs go through torchrun --nproc-per-node)"
            )
        if (self.steps is None) == (self.duration_s is None):
            raise ValueError("set exactly one of steps or duration_s")
        if self.steps is not None and self.warmup_steps >= self.steps:
            raise ValueError(
                f"warmup_steps ({self.warmup_steps}) must be less than steps ({self.steps})"
            )
        return self


def _selector(text: str) -> str:
    parse_selector(text)  # ValueError saying what is wrong
    return text


def _label_value(value: str) -> str:
    label_matcher("label", value)  # a bad regular expression is refused here
    return value


Selector = Annotated[str, Field(min_length=1, max_length=1000), AfterValidator(_selector)]
LabelName = Annotated[str, Field(pattern=r"^[a-zA-Z_][a-zA-Z0-9_]*$", max_length=200)]
LabelValue = Annotated[str, Field(max_length=1000), AfterValidator(_label_value)]


class Prometheus(Model):
    """A Prometheus text endpoint scraped during the run: the storage server's own view."""

    url: Annotated[str, Field(pattern=r"^https?://\S+$", max_length=2000)] | None = Field(
        None,
        description="The endpoint to scrape, e.g. http://storage-host:9100/metrics "
        "(prometheus-node-exporter; NetApp Harvest's exporter port for ONTAP). Required when "
        "collectors.enabled lists prometheus. An endpoint that does not answer when the run "
        "starts is reported as not available and the run goes on without it.",
    )
    metrics: Annotated[list[Selector], Field(min_length=1, max_length=200)] = Field(
        list(DEFAULT_METRICS),
        description='Series to keep: a metric name, or name{label="value", label2=~"regex", '
        'label3!="x"} (PromQL\'s selector: =, !=, =~, !~; regexes match the whole value). '
        "The default, node_exporter's disk reads, disk busy time, network transmit (not lo) "
        "and CPU seconds, gives the summary's server_disk_read_MBps, server_disk_reads_per_s, "
        "server_disk_util_pct, server_net_transmit_MBps and server_cpu_busy_pct; any other "
        "metric is summarised as prom_<name>.",
    )
    labels: Annotated[dict[LabelName, LabelValue], Field(max_length=50)] = Field(
        {},
        description="Label matchers applied to every selector, e.g. {device: vda}; a value "
        "starting with =~, != or !~ uses that operator (device: '=~nvme.*'). A series that "
        "lacks the label is not filtered by it: device narrows the disk and network metrics, "
        "not node_cpu_seconds_total (and device: vda leaves no network interface: name those "
        "in the selector instead).",
    )
    interval_s: Annotated[float, Field(ge=0.05, le=60)] = Field(
        1.0, description="Seconds between scrapes (its own interval, not collectors.rate_hz)."
    )
    timeout_s: Annotated[float, Field(gt=0, le=60)] = Field(
        2.0,
        description="Seconds one scrape may take; a scrape that fails during the run leaves a "
        "gap and is counted (server_scrapes_failed), never stops the run.",
    )
    name: Name = Field(
        "server",
        description="Whose view this is (the storage host's name), shown in the report and "
        "the run's printed summary.",
    )


class Collectors(Model):
    """The samplers that record the machine's time series during a run."""

    rate_hz: Annotated[float, Field(gt=0, le=1000)] = Field(
        10.0, description="Samples a second (Hz) of every collector."
    )
    enabled: Annotated[
        list[Literal[COLLECTOR_NAMES]],  # type: ignore[valid-type]
        Field(max_length=len(COLLECTOR_NAMES)),
    ] = Field(
        list(DEFAULT_COLLECTORS),
        description="Collectors to run: gpu (NVML), io (/proc I/O counters, the dataset's disk "
        "and NFS mount), cpu (per core and process tree), prometheus (a server's Prometheus "
        "endpoint, see collectors.prometheus; not in the default); latency is accepted and "
        "ignored (the loop times every sample). A missing source is reported, never stops the "
        "run.",
    )
    prometheus: Prometheus = Field(
        default_factory=Prometheus,
        description="The prometheus collector's endpoint and series (used when enabled lists "
        "prometheus).",
    )

    @model_validator(mode="after")
    def _prometheus_has_url(self) -> Collectors:
        if "prometheus" in self.enabled and self.prometheus.url is None:
            raise ValueError(
                "collectors.prometheus.url is required when collectors.enabled lists prometheus"
            )
        return self


class Thresholds(Model):
    """Pass/fail limits a run is judged against, and tolerances for regression checks."""

    min_busy_pct: Percent | None = Field(
        None,
        description="Lowest busy % (compute / wall time, MLPerf Storage's accelerator "
        "utilisation) a run passes with; unset: not judged.",
    )
    min_gpu_util_pct: Percent | None = Field(
        None,
        description="Lowest mean GPU utilisation (NVML, %) a run passes with; unset: not judged.",
    )
    min_samples_per_s: Annotated[float, Amount(1e9, "a billion samples a second")] | None = Field(
        None, description="Lowest training rate, in samples a second; unset: not judged."
    )
    max_data_wait_pct: Percent | None = Field(
        None,
        description="Highest data-wait % (time waiting for batches / wall time) a run passes "
        "with; unset: not judged.",
    )
    max_fetch_latency_p99_ms: Annotated[float, Amount(1e7, "about three hours")] | None = Field(
        None,
        description="Highest 99th percentile of one sample's fetch time (read + decode + crop), "
        "in milliseconds; unset: not judged.",
    )
    tolerance_pct: Annotated[
        dict[
            Annotated[str, Field(max_length=200)],
            Annotated[float, Amount(10_000.0, "a hundredfold change")],
        ],
        Field(max_length=100),
    ] = Field(
        {},
        description="harness compare: per metric name, the change in % of the baseline median "
        "that counts as large (e.g. samples_per_s: 5); a base name covers its [N] variants. "
        "Unset metrics keep compare's defaults.",
    )


# --- scenario -----------------------------------------------------------------------------------


class Scenario(Model):
    """One experiment: the dataset, the input pipeline, the training loop, the collectors and
    the pass/fail thresholds."""

    name: Name = Field(description="The scenario's name, in results, reports and comparisons.")
    description: Description = Field("", description="Free text: what the scenario measures.")
    dataset: Dataset = Field(
        description="The data to read: generated by harness datagen, or your own folder."
    )
    pipeline: Pipeline = Field(Pipeline(), description="The input pipeline.")
    training: Training = Field(description="The training loop, real or emulated.")
    collectors: Collectors = Field(Collectors(), description="The time-series collectors.")
    thresholds: Thresholds = Field(
        Thresholds(), description="Pass/fail limits and compare tolerances."
    )

    @model_validator(mode="after")
    def _consistent(self) -> Scenario:
        dataset, pipeline = self.dataset, self.pipeline
        if dataset.kind == "video":
            if pipeline.mode is None:
                raise ValueError("pipeline.mode is required for video: decoded or cached")
            if pipeline.mode == "cached" and pipeline.cache is None:
                raise ValueError(
                    "pipeline.mode cached needs pipeline.cache.path: where the frame cache lives"
                )
        elif pipeline.mode is not None:
            raise ValueError("pipeline.mode applies to video datasets only")
        elif pipeline.sequence_length != 1:
            raise ValueError("pipeline.sequence_length applies to video datasets only")
        if pipeline.backend == "nvdec" and pipeline.mode != "decoded":
            raise ValueError(
                "pipeline.backend nvdec decodes video: it needs dataset.kind video and "
                "pipeline.mode decoded"
            )
        if dataset.kind == "records" and self.training.compute != "emulated":
            raise ValueError(
                "dataset.kind records has no model to train (MLPerf Storage emulates the "
                "accelerators): set training.compute emulated with a profile"
            )
        if dataset.kind == "records" and self.training.profile_scaling != "none":
            raise ValueError(
                "training.profile_scaling flops counts U-Net FLOPs: a records scenario takes "
                "its profile's time as it is (none)"
            )
        if dataset.kind == "records" and pipeline.backend != "torch":
            raise ValueError("dataset.kind records is read by the torch backend only")
        generate = dataset.generate
        if isinstance(generate, RecordsGenerate):
            pass  # no pictures: pipeline.crop is only the placeholder tensors' side
        elif generate is not None and pipeline.crop > min(generate.width, generate.height):
            raise ValueError(
                f"pipeline.crop ({pipeline.crop}) is larger than the generated images "
                f"({generate.width}x{generate.height})"
            )
        if pipeline.workers == 0 and pipeline.prefetch_factor != 2:
            raise ValueError("pipeline.prefetch_factor needs pipeline.workers > 0")
        _check_emulated_preprocess(self)
        return self


def _check_emulated_preprocess(scenario: Scenario) -> None:
    """Emulated preprocessing and the server shape need emulated compute; emulated
    preprocessing needs its profile and the torch backend (it reads through the torch sources)."""
    pipeline, training = scenario.pipeline, scenario.training
    if training.server is not None and training.compute != "emulated":
        raise ValueError("training.server applies to training.compute emulated")
    if pipeline.preprocess != "emulated":
        return
    if training.compute != "emulated":
        raise ValueError("pipeline.preprocess emulated needs training.compute emulated")
    if pipeline.preprocess_profile is None:
        raise ValueError(
            "pipeline.preprocess emulated needs pipeline.preprocess_profile: a file from "
            "harness calibrate --preprocess"
        )
    if pipeline.backend != "torch":
        raise ValueError(
            f"pipeline.preprocess emulated reads through the torch backend, not {pipeline.backend}"
        )
    if pipeline.mode == "decoded":
        raise ValueError(
            "pipeline.preprocess emulated: decoded video reads through its decoder; emulate the "
            "frame cache (pipeline.mode cached) or an image collage"
        )


class Suite(Model):
    """A suite file: scenario files run together, into one report."""

    name: Name = Field(description="The suite's name, in its report.")
    description: Description = Field("", description="Free text: what the suite covers.")
    scenarios: Annotated[list[PathText], Field(min_length=1, max_length=1000)] = Field(
        description="Scenario files, relative to the suite file."
    )
    capacity: CapacitySettings | None = Field(
        None,
        description="When set, harness suite runs a capacity search of each scenario instead of "
        "fixed runs.",
    )


@dataclass(frozen=True)
class LoadedScenario:
    """A validated scenario and the file it came from (for messages and results)."""

    file: Path
    scenario: Scenario
