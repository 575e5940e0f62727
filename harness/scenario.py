"""Typed, frozen scenario model; YAML loading with ``-o`` overrides and one-line errors.

A scenario file describes one experiment: the dataset (generated or brought by the user), the input
pipeline, the training loop, the collectors and the pass/fail thresholds. A suite file lists
scenario files. Loading never raises anything but ``ScenarioError``, whose ``problems`` are lines of
the form ``FILE: field.path: what is expected (got VALUE)``.

Relative dataset and cache paths are resolved against the current working directory: they name
the storage under test, which belongs to the machine, not to the scenario file.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from harness.collect import KNOWN as COLLECTOR_NAMES
from harness.errors import ScenarioError, one_line
from harness.pipeline import BACKEND_NAMES

PositiveInt = Annotated[int, Field(gt=0)]
NonNegativeInt = Annotated[int, Field(ge=0)]
PositiveFloat = Annotated[float, Field(gt=0)]
Percent = Annotated[float, Field(ge=0, le=100)]
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


ModelT = TypeVar("ModelT", bound=BaseModel)


# --- dataset ------------------------------------------------------------------------------------


class CollageGenerate(Model):
    """Parameters of the synthetic image collage (large images of textured objects)."""

    images: PositiveInt | None = None  # or size: 5x-ram
    width: PositiveInt
    height: PositiveInt
    classes: ClassCount = 5
    objects_per_image: PositiveInt = 40
    format: ImageFormat = "npy"
    jpeg_quality: Annotated[int, Field(ge=1, le=100)] = 90
    seed: Seed = 0
    workers: PositiveInt | None = None  # processes; None: every core given to the harness
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

    videos: PositiveInt
    frames: PositiveInt | None = None  # per video; or size: 5x-ram
    width: PositiveInt
    height: PositiveInt
    fps: Annotated[int, Field(ge=1, le=240)] = 30
    codec: VideoCodec = "h264"
    gop: PositiveInt = 60  # frames between keyframes; a random frame costs ~gop/2 decodes
    crf: Annotated[int, Field(ge=0, le=63)] | None = 23
    bitrate_kbps: PositiveInt | None = None  # when set, replaces crf
    preset: str = "veryfast"  # x264/x265 preset; ignored by other codecs
    classes: ClassCount = 5
    objects: PositiveInt = 4  # mean number of objects in view at once
    noise: Annotated[int, Field(ge=0, le=32)] = 3  # sensor noise amplitude, in 8-bit levels
    seed: Seed = 0
    workers: PositiveInt | None = None
    unique: Uniqueness = "pool"  # pool: encode pool_segments, repeat them bit for bit
    pool_segments: PositiveInt = 4  # distinct segments encoded per camera
    segment_gops: PositiveInt = 1  # GOPs per segment: the unit of repetition
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
    path: str  # where the dataset lives: the storage under test
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

    path: str
    format: ImageFormat = "npy"
    jpeg_quality: Annotated[int, Field(ge=1, le=100)] = 90
    segment_frames: PositiveInt = 256  # unit of parallel work and of resume after a kill
    workers: PositiveInt | None = None


class Pipeline(Model):
    backend: Literal[BACKEND_NAMES] = "torch"  # type: ignore[valid-type]
    mode: Literal["decoded", "cached"] | None = None  # video only
    # Parallel fetchers: DataLoader worker processes (torch), pipeline threads (dali), decoder
    # threads with their own NVDEC sessions (nvdec).
    workers: NonNegativeInt = 2
    batch_size: PositiveInt = 8
    crop: PositiveInt = 256  # square crops, in pixels
    shuffle: bool = True
    prefetch_factor: PositiveInt = 2
    decoder_threads: PositiveInt = 1  # per worker, for video decode
    # Video: consecutive frames taken from each random position (1: every frame is a random
    # seek). Longer sequences amortise the seek to the keyframe, as DALI's video reader does.
    sequence_length: PositiveInt = 1
    page_cache: Literal["cold", "warm"] = "cold"
    on_corrupt: Literal["skip", "fail"] = "fail"
    cache: FrameCache | None = None


# --- training, collectors, thresholds -----------------------------------------------------------


class UNetConfig(Model):
    width: PositiveInt = 16  # channels of the first level; doubles at each level down
    depth: Annotated[int, Field(ge=1, le=7)] = 3


class Training(Model):
    model: UNetConfig = UNetConfig()
    steps: PositiveInt | None = None
    duration_s: PositiveFloat | None = None
    warmup_steps: NonNegativeInt = 5
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    optimizer: Literal["adamw", "sgd"] = "adamw"
    lr: PositiveFloat = 1e-3
    eval_samples: NonNegativeInt = 32  # held-out samples for mIoU
    # CPU training threads; None: the cores left after the DataLoader workers (at least one),
    # so that the loop and the workers do not fight over the same cores.
    cpu_threads: PositiveInt | None = None
    seed: Seed = 0
    # Emulated accelerators: the step waits for its batch as a real one does, then spends a
    # compute time drawn from a profile calibrated on real steps (harness calibrate) instead of
    # running the U-Net, so that a machine without the GPUs loads the storage as they would.
    compute: Literal["real", "emulated"] = "real"
    profile: str | None = None  # a shipped profile's name (harness profiles) or a profile file
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
    enabled: list[Literal[COLLECTOR_NAMES]] = list(COLLECTOR_NAMES)  # type: ignore[valid-type]


class Thresholds(Model):
    """Pass/fail limits a run is judged against, and tolerances for regression checks."""

    min_busy_pct: Percent | None = None
    min_gpu_util_pct: Percent | None = None
    min_samples_per_s: PositiveFloat | None = None
    max_data_wait_pct: Percent | None = None
    max_fetch_latency_p99_ms: PositiveFloat | None = None
    tolerance_pct: dict[str, PositiveFloat] = {}


# --- scenario -----------------------------------------------------------------------------------


class Scenario(Model):
    name: Annotated[str, Field(min_length=1)]
    description: str = ""
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


class SuiteCapacity(Model):
    """``harness suite`` runs a capacity search of each scenario instead of fixed runs (see
    ``harness capacity``)."""

    profile: str | None = None  # sets training.profile of every scenario
    min_busy: Annotated[float, Field(gt=0, le=100)] = 90.0
    min_busy_each: Annotated[float, Field(gt=0, le=100)] = 85.0
    max_accelerators: Annotated[int, Field(ge=1, le=1024)] = 64
    probe_s: Annotated[float, Field(gt=0, le=86400)] = 10.0
    repeat: Annotated[int, Field(ge=1, le=100)] = 3


class Suite(Model):
    name: Annotated[str, Field(min_length=1)]
    description: str = ""
    scenarios: Annotated[list[str], Field(min_length=1)]
    capacity: SuiteCapacity | None = None


@dataclass(frozen=True)
class LoadedScenario:
    """A validated scenario and the file it came from (for messages and results)."""

    file: Path
    scenario: Scenario


# --- loading ------------------------------------------------------------------------------------


def parse_override(text: str) -> tuple[list[str], Any]:
    """Split ``key.path=value``; the value is YAML (``8``, ``true``, ``[1, 2]``, ``null``)."""
    key, sep, raw = text.partition("=")
    parts = key.strip().split(".")
    if not sep or not all(parts):
        raise ScenarioError([f"-o {text}: expected key.path=value, e.g. -o pipeline.workers=4"])
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise ScenarioError([f"-o {text}: value is not valid YAML: {one_line(exc)}"]) from None
    return parts, value


def apply_overrides(data: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Return a copy of ``data`` with each ``key.path=value`` set (sections created as needed)."""
    import copy

    result = copy.deepcopy(data)
    for text in overrides:
        parts, value = parse_override(text)
        node = result
        for depth, part in enumerate(parts[:-1]):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                where = ".".join(parts[: depth + 1])
                raise ScenarioError([f"-o {text}: {where} is a value, not a section"])
            node = child
        node[parts[-1]] = value
    return result


def read_yaml(path: Path) -> dict[str, Any]:
    """Read a YAML mapping with the safe loader; any problem becomes a one-line ScenarioError."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ScenarioError([f"{path}: no such file"]) from None
    except IsADirectoryError:
        raise ScenarioError([f"{path}: is a directory, expected a YAML file"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ScenarioError([f"{path}: cannot read: {one_line(exc)}"]) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}:{mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or one_line(exc)
        raise ScenarioError([f"{path}{where}: YAML syntax error: {problem}"]) from None
    if not isinstance(data, dict):
        got = "an empty file" if data is None else f"a {type(data).__name__}"
        raise ScenarioError([f"{path}: expected a mapping of fields, got {got}"])
    return data


def validate_model(file: Path, data: dict[str, Any], model: type[ModelT]) -> ModelT:
    """``data``, read from ``file``, as ``model``: problems become a ScenarioError naming it."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ScenarioError(_format_errors(file, exc, model)) from None


def load_scenario(path: str | os.PathLike[str], overrides: Sequence[str] = ()) -> LoadedScenario:
    """Load and validate one scenario file, with ``-o`` overrides applied before validation."""
    file = Path(path)
    data = apply_overrides(read_yaml(file), overrides)
    if "scenarios" in data:
        raise ScenarioError([f"{file}: is a suite file; this command takes a scenario file"])
    scenario = validate_model(file, data, Scenario)
    return LoadedScenario(file=file, scenario=_resolve_paths(scenario))


def is_suite(path: str | os.PathLike[str]) -> bool:
    """A suite is a YAML mapping with a ``scenarios`` list."""
    return "scenarios" in read_yaml(Path(path))


def load_suite(
    path: str | os.PathLike[str], overrides: Sequence[str] = ()
) -> tuple[Suite, list[LoadedScenario]]:
    """Load a suite and every scenario it lists (paths relative to the suite file).

    Every problem in every file is collected before raising, so one run of ``validate`` shows all.
    """
    file = Path(path)
    suite = validate_model(file, read_yaml(file), Suite)
    problems: list[str] = []
    loaded: list[LoadedScenario] = []
    for entry in suite.scenarios:
        try:
            loaded.append(load_scenario(file.parent / entry, overrides))
        except ScenarioError as exc:
            problems.extend(exc.problems)
    names = [item.scenario.name for item in loaded]
    for name in sorted({n for n in names if names.count(n) > 1}):
        problems.append(f"{file}: scenarios: two scenarios are named {name!r}; names must differ")
    problems.extend(_shared_dataset_conflicts(file, loaded))
    if problems:
        raise ScenarioError(problems)
    return suite, loaded


def load_scenarios(
    paths: Iterable[str | os.PathLike[str]], overrides: Sequence[str] = ()
) -> list[LoadedScenario]:
    """Load scenario and suite files alike, collecting every problem of every file."""
    problems: list[str] = []
    loaded: list[LoadedScenario] = []
    for path in paths:
        try:
            if is_suite(path):
                loaded.extend(load_suite(path, overrides)[1])
            else:
                loaded.append(load_scenario(path, overrides))
        except ScenarioError as exc:
            problems.extend(exc.problems)
    if problems:
        raise ScenarioError(problems)
    return loaded


def scenario_to_yaml(scenario: Scenario) -> str:
    """The fully resolved scenario (defaults filled in), as YAML."""
    return yaml.safe_dump(scenario.model_dump(mode="json"), sort_keys=False, width=100)


# --- helpers ------------------------------------------------------------------------------------


def _resolve_paths(scenario: Scenario) -> Scenario:
    dataset = scenario.dataset.model_copy(update={"path": _absolute(scenario.dataset.path)})
    pipeline = scenario.pipeline
    if pipeline.cache is not None:
        cache = pipeline.cache.model_copy(update={"path": _absolute(pipeline.cache.path)})
        pipeline = pipeline.model_copy(update={"cache": cache})
    return scenario.model_copy(update={"dataset": dataset, "pipeline": pipeline})


def _absolute(path: str) -> str:
    return str(Path(os.path.expanduser(path)).absolute())


def _shared_dataset_conflicts(file: Path, loaded: list[LoadedScenario]) -> list[str]:
    """Scenarios of one suite that put different datasets at the same path would overwrite each
    other; the same dataset shared by several scenarios (decoded and cached video) is fine."""
    seen: dict[str, LoadedScenario] = {}
    problems = []
    for item in loaded:
        dataset = item.scenario.dataset
        first = seen.setdefault(dataset.path, item)
        if first is not item and first.scenario.dataset != dataset:
            problems.append(
                f"{file}: scenarios {first.scenario.name!r} and {item.scenario.name!r} describe "
                f"different datasets at the same dataset.path {dataset.path}"
            )
    return problems


_DATASET_KINDS: dict[str, type[BaseModel]] = {
    "image_collage": ImageCollageDataset,
    "video": VideoDataset,
}


def _format_errors(file: Path, exc: ValidationError, model: type[BaseModel]) -> list[str]:
    lines = []
    for error in exc.errors():
        # Discriminated unions add the tag ("video") to the location: users never wrote it.
        loc = [str(p) for i, p in enumerate(error["loc"]) if not (i == 1 and p in _DATASET_KINDS)]
        field = ".".join(loc)
        kind = error["type"]
        if kind == "extra_forbidden":
            hint = _suggest(model, [str(p) for p in error["loc"]])
            lines.append(f"{file}: {field}: unknown field{hint}")
            continue
        if kind == "missing":
            lines.append(f"{file}: {field}: required field is missing")
            continue
        message = error["msg"].removeprefix("Value error, ")
        got = error.get("input")
        shown = "" if isinstance(got, dict) or kind == "value_error" else f" (got {got!r})"
        where = f"{field}: " if field else ""  # whole-scenario checks name their fields
        lines.append(f"{file}: {where}{_lower_first(message)}{shown}")
    return lines


def _suggest(model: type[BaseModel], loc: list[str]) -> str:
    """' (did you mean workers?)' for a misspelt key, found among the siblings it sits beside.

    ``loc`` is pydantic's location, with the dataset kind's tag still in it."""
    fields = _fields_at(model, loc[:-1])
    close = difflib.get_close_matches(loc[-1], fields, n=1)
    return f" (did you mean {close[0]}?)" if close else f" (expected one of: {', '.join(fields)})"


def _fields_at(model: type[BaseModel], loc: list[str]) -> list[str]:
    current: Any = model
    for part in loc:
        if part in _DATASET_KINDS:
            current = _DATASET_KINDS[part]
            continue
        field = getattr(current, "model_fields", {}).get(part)
        if field is None:
            return []
        current = _model_in(field.annotation)
        if current is None:
            return []
    return sorted(getattr(current, "model_fields", {}))


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:]
