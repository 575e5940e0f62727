"""The typed, frozen scenario model: what a scenario, a suite and their sections may hold.

Every count and size has an upper bound that holds on any machine, with its reason in the message
(CI validates scenarios on machines that will not run them); limits relative to the machine that
runs a scenario are checked when the run starts (``harness.scenario.machine``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from harness.collect import KNOWN as COLLECTOR_NAMES
from harness.errors import one_line
from harness.pipeline import BACKEND_NAMES
from harness.scenario.capacity_settings import CapacitySettings


def _at_most(limit: float, reason: str) -> AfterValidator:
    shown = str(int(limit)) if float(limit).is_integer() else str(limit)

    def check(value: float) -> float:
        if value > limit:
            raise ValueError(f"at most {shown} ({reason}), got {one_line(repr(value), 60)}")
        return value

    return AfterValidator(check)


def Count(limit: int, reason: str, minimum: int = 1) -> Any:
    """An integer from ``minimum`` to ``limit``; ``reason`` says why the limit (in the message
    and in the JSON Schema)."""
    extra = {"maximum": limit, "x-limit-reason": reason}
    return Annotated[int, Field(ge=minimum, json_schema_extra=extra), _at_most(limit, reason)]


def Amount(limit: float, reason: str) -> Any:
    """A float above zero, up to ``limit``."""
    extra = {"maximum": limit, "x-limit-reason": reason}
    return Annotated[float, Field(gt=0, json_schema_extra=extra), _at_most(limit, reason)]


PATH_MAX = 4096  # Linux's longest path
PathText = Annotated[str, Field(min_length=1, max_length=PATH_MAX)]
Name = Annotated[str, Field(min_length=1, max_length=200)]
Description = Annotated[str, Field(max_length=20_000)]
Percent = Annotated[float, Field(ge=0, le=100)]
Workers = Count(1024, "processes or threads on one host")
MAX_SIDE = 65_535  # the largest side a JPEG can have; PNG and npy files here use the same bound
Side = Count(MAX_SIDE, "the largest side a JPEG image can have")
VideoSide = Count(8192, "the largest frame side of H.264 and HEVC levels (8192x4320)")
Steps = Count(10**9, "a billion steps")
ClassCount = Annotated[int, Field(ge=2, le=255)]
Seed = Annotated[int, Field(ge=0, lt=2**63)]

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


class CollageGenerate(Model):
    """Parameters of the synthetic image collage (large images of textured objects)."""

    images: Count(10_000_000, "ten million files; the study's collage has 1,300") | None = (
        None  # or size: 5x-ram
    )
    width: Side
    height: Side
    classes: ClassCount = 5
    objects_per_image: Count(100_000, "objects drawn on one image") = 40
    format: ImageFormat = "npy"
    jpeg_quality: Annotated[int, Field(ge=1, le=100)] = 90
    seed: Seed = 0
    workers: Workers | None = None  # processes; None: every core given to the harness
    unique: Uniqueness = "pool"
    size: DatasetSize | None = None  # picks the image count from the clients' RAM

    @model_validator(mode="after")
    def _count_or_size(self) -> CollageGenerate:
        _one_of(self, "images")
        return self

    def image_bytes(self) -> int:
        """Raw uint8 RGB bytes of one image (the size of an ``npy`` file, less its header)."""
        return self.width * self.height * 3


class VideoGenerate(Model):
    """Parameters of the synthetic surveillance videos (fixed background, moving objects)."""

    videos: Count(1_000_000, "a million files")
    frames: Count(10**9, "about a year at 30 fps") | None = None  # per video; or size: 5x-ram
    width: VideoSide
    height: VideoSide
    fps: Annotated[int, Field(ge=1, le=240)] = 30
    codec: VideoCodec = "h264"
    gop: Count(100_000, "frames between keyframes") = (
        60  # frames between keyframes; a random frame costs ~gop/2 decodes
    )
    crf: Annotated[int, Field(ge=0, le=63)] | None = 23
    bitrate_kbps: Count(10_000_000, "10 Gb/s") | None = None  # when set, replaces crf
    preset: Annotated[str, Field(min_length=1, max_length=32)] = (
        "veryfast"  # x264/x265 preset; ignored by other codecs
    )
    classes: ClassCount = 5
    objects: Count(10_000, "objects in view at once") = 4  # mean number of objects in view at once
    noise: Annotated[int, Field(ge=0, le=32)] = 3  # sensor noise amplitude, in 8-bit levels
    seed: Seed = 0
    workers: Workers | None = None
    unique: Uniqueness = "pool"  # pool: encode pool_segments, repeat them bit for bit
    pool_segments: Count(10_000, "distinct segments encoded per camera") = 4
    segment_gops: Count(10_000, "GOPs per segment: the unit of repetition") = 1
    size: DatasetSize | None = None  # picks the frame count from the clients' RAM

    @model_validator(mode="after")
    def _even_sizes(self) -> VideoGenerate:
        _one_of(self, "frames")
        # 4:2:0 chroma subsampling, used by every codec here, needs even dimensions.
        for name in ("width", "height"):
            if getattr(self, name) % 2:
                raise ValueError(f"{name} must be even for 4:2:0 video, got {getattr(self, name)}")
        return self


def _one_of(params: CollageGenerate | VideoGenerate, count: str) -> None:
    if (getattr(params, count) is None) == (params.size is None):
        raise ValueError(f"set either {count} or size (5x-ram), not both and not neither")


class _DatasetBase(Model):
    kind: str  # narrowed by each dataset kind below; declared here so that it prints first
    path: PathText  # where the dataset lives: the storage under test
    classes: ClassCount | None = None  # bring-your-own only: number of classes in the masks
    label_rule: LabelRule | None = None  # bring-your-own without masks: how labels are derived

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


class ImageCollageDataset(_DatasetBase):
    kind: Literal["image_collage"]
    generate: CollageGenerate | None = None


class VideoDataset(_DatasetBase):
    kind: Literal["video"]
    generate: VideoGenerate | None = None


Dataset = Annotated[ImageCollageDataset | VideoDataset, Field(discriminator="kind")]


# --- pipeline -----------------------------------------------------------------------------------


class FrameCache(Model):
    """Where and how the "cached" video mode stores decoded frames."""

    path: PathText
    format: ImageFormat = "npy"
    jpeg_quality: Annotated[int, Field(ge=1, le=100)] = 90
    segment_frames: Count(1_000_000, "frames per unit of work") = (
        256  # unit of parallel work and of resume after a kill
    )
    workers: Workers | None = None


class Pipeline(Model):
    backend: Literal[BACKEND_NAMES] = "torch"  # type: ignore[valid-type]
    mode: Literal["decoded", "cached"] | None = None  # video only
    # Parallel fetchers: DataLoader worker processes (torch), pipeline threads (dali), decoder
    # threads with their own NVDEC sessions (nvdec).
    workers: Count(1024, "processes or threads on one host", minimum=0) = 2
    batch_size: Count(65_536, "samples in one batch") = 8
    crop: Side = 256  # square crops, in pixels
    shuffle: bool = True
    prefetch_factor: Count(1024, "batches in flight per worker") = 2
    decoder_threads: Count(256, "decoding threads per worker") = 1  # per worker, for video decode
    # Synchronous whole-file reads each worker keeps in flight (torch backend; frame caches and
    # PNG/JPEG collages): threads stand in for the workers a client with more cores would run.
    read_threads: Count(64, "reads in flight per worker") = 1
    # Video: consecutive frames taken from each random position (1: every frame is a random
    # seek). Longer sequences amortise the seek to the keyframe, as DALI's video reader does.
    sequence_length: Count(65_536, "consecutive frames per seek") = 1
    page_cache: Literal["cold", "warm"] = "cold"
    on_corrupt: Literal["skip", "fail"] = "fail"
    cache: FrameCache | None = None


# --- training, collectors, thresholds -----------------------------------------------------------


class UNetConfig(Model):
    width: Count(4096, "channels of the first level") = (
        16  # channels of the first level; doubles at each level down
    )
    depth: Annotated[int, Field(ge=1, le=7)] = 3


class Training(Model):
    model: UNetConfig = UNetConfig()
    steps: Steps | None = None
    duration_s: Amount(31 * 86400, "31 days") | None = None
    warmup_steps: Count(10**9, "a billion steps", minimum=0) = 5
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    optimizer: Literal["adamw", "sgd"] = "adamw"
    lr: Amount(100.0, "a learning rate") = 1e-3
    eval_samples: Count(1_000_000, "held-out samples", minimum=0) = 32  # held-out samples for mIoU
    # CPU training threads; None: the cores left after the DataLoader workers (at least one),
    # so that the loop and the workers do not fight over the same cores.
    cpu_threads: Count(4096, "threads on one host") | None = None
    seed: Seed = 0
    # Emulated accelerators: the step waits for its batch as a real one does, then spends a
    # compute time drawn from a profile calibrated on real steps (harness calibrate) instead of
    # running the U-Net, so that a machine without the GPUs loads the storage as they would.
    compute: Literal["real", "emulated"] = "real"
    profile: PathText | None = None  # a shipped profile's name (harness profiles) or a profile file
    profile_scaling: Literal["none", "flops"] = "none"
    # emulated accelerators on this host, one process each; None: 1, or torchrun's
    # --nproc-per-node under torchrun
    accelerators: Annotated[int, Field(ge=1, le=1024)] | None = None
    sync: Literal["barrier", "none"] = "barrier"  # stands in for the all-reduce between them
    collective_timeout_s: Annotated[float, Field(gt=0, le=86400)] = 120.0

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


class Collectors(Model):
    rate_hz: Annotated[float, Field(gt=0, le=1000)] = 10.0
    enabled: Annotated[
        list[Literal[COLLECTOR_NAMES]],  # type: ignore[valid-type]
        Field(max_length=len(COLLECTOR_NAMES)),
    ] = list(COLLECTOR_NAMES)


class Thresholds(Model):
    """Pass/fail limits a run is judged against, and tolerances for regression checks."""

    min_busy_pct: Percent | None = None
    min_gpu_util_pct: Percent | None = None
    min_samples_per_s: Amount(1e9, "a billion samples a second") | None = None
    max_data_wait_pct: Percent | None = None
    max_fetch_latency_p99_ms: Amount(1e7, "about three hours") | None = None
    tolerance_pct: Annotated[
        dict[Annotated[str, Field(max_length=200)], Amount(10_000.0, "a hundredfold change")],
        Field(max_length=100),
    ] = {}


# --- scenario -----------------------------------------------------------------------------------


class Scenario(Model):
    name: Name
    description: Description = ""
    dataset: Dataset
    pipeline: Pipeline = Pipeline()
    training: Training
    collectors: Collectors = Collectors()
    thresholds: Thresholds = Thresholds()

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
        generate = dataset.generate
        if generate is not None and pipeline.crop > min(generate.width, generate.height):
            raise ValueError(
                f"pipeline.crop ({pipeline.crop}) is larger than the generated images "
                f"({generate.width}x{generate.height})"
            )
        if pipeline.workers == 0 and pipeline.prefetch_factor != 2:
            raise ValueError("pipeline.prefetch_factor needs pipeline.workers > 0")
        return self


class Suite(Model):
    name: Name
    description: Description = ""
    scenarios: Annotated[list[PathText], Field(min_length=1, max_length=1000)]
    capacity: CapacitySettings | None = None


@dataclass(frozen=True)
class LoadedScenario:
    """A validated scenario and the file it came from (for messages and results)."""

    file: Path
    scenario: Scenario
