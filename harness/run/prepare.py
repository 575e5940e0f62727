"""Preparing a run: everything that can refuse it, checked before any work.

The backend, the device, the dataset, the frame cache, the backend's limits and the emulation
profile are checked here; ``PreparedRun`` carries what they gave to the drivers
(``harness.run.single``, ``harness.run.accelerators``), and ``RunContext`` what every stage of one
run needs to know about it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from harness import pagecache
from harness.collect import PER_HOST, make_collectors
from harness.collect.misses import missed_bytes_path
from harness.collect.sampler import Collector
from harness.data.cache import CacheManifest, read_cache_manifest
from harness.data.index import dataset_manifest as dataset_index
from harness.data.manifest import DatasetManifest
from harness.data.parallel import available_cpus
from harness.errors import HarnessError
from harness.pipeline import Backend, BatchRequest, require_backend
from harness.pipeline.accounting import FetchLog
from harness.pipeline.plan import RecordPlan, SamplePlan
from harness.pipeline.preprocess import (
    PreprocessPlan,
    read_preprocess_profile,
    remove_stale_slots,
    source_settings,
)
from harness.pipeline.sources import Source, build_source
from harness.scenario import LoadedScenario, Scenario
from harness.summary import JobHosts
from harness.train.distributed import Ranks
from harness.train.loop import Device, resolve_device
from harness.train.profiles import ComputeTimes, compute_times


@dataclass
class RunContext:
    """What every stage of one run needs to know about it, passed explicitly."""

    scenario: Scenario
    folder: Path
    ranks: Ranks
    device: Device
    dataset_manifest: DatasetManifest
    cache_manifest: CacheManifest | None
    quiet: bool
    # None in an emulated accelerator's own process: its host's controller prepares the page
    # cache and writes the results.
    page_cache: pagecache.PageCacheRecord | None
    # a job's ranks across hosts (torchrun): each rank's host as they joined, and the ranks
    # that never said their loop ended (lost hosts); None for a single process
    hosts: JobHosts | None = None


@dataclass
class PreparedRun:
    """A scenario checked against this machine and its data, before any work."""

    loaded: LoadedScenario
    backend: Backend
    device: Device
    dataset_manifest: DatasetManifest
    cache_manifest: CacheManifest | None
    source: Source
    plan: SamplePlan
    compute_times: ComputeTimes | None  # emulated runs: where step times come from
    preprocess: PreprocessPlan | None = None  # emulated preprocessing: where its times come from

    @property
    def scenario(self) -> Scenario:
        return self.loaded.scenario

    def emulation(self) -> dict[str, Any] | None:
        """The manifest's and the summary's ``emulation`` block: the compute profile and its
        scaling, and with emulated preprocessing its profile, speed factor and cores."""
        if self.compute_times is None:
            return None
        document = self.compute_times.document()
        server = self.scenario.training.server
        if server is not None:
            document["server"] = server.model_dump()
        if self.preprocess is not None:
            document.update(self.preprocess.document())
        return document

    def batch_request(
        self, ranks: Ranks, folder: Path, fetch_log: FetchLog | None = None, host: str = ""
    ) -> BatchRequest:
        """``host``: what names the host's shared files (``host_key``); the run's id when
        empty (the emulated launcher's ranks: one run folder per host already)."""
        pipeline = self.scenario.pipeline
        return BatchRequest(
            source=self.source,
            plan=self.plan,
            batch_size=pipeline.batch_size,
            crop=pipeline.crop,
            workers=pipeline.workers,
            prefetch_factor=pipeline.prefetch_factor,
            read_threads=pipeline.read_threads,
            on_corrupt=pipeline.on_corrupt,
            seed=self.scenario.training.seed,
            rank=ranks.rank,
            world=ranks.world,
            steps=self.scenario.training.steps,
            device=self.device.torch_device,
            work_dir=folder,
            fetch_log=fetch_log,
            preprocess=None
            if self.preprocess is None
            else self.preprocess.for_rank(
                host or folder.name, ranks.rank, self.scenario.training.seed
            ),
        )


def prepare_run(loaded: LoadedScenario, local_rank: int = 0) -> PreparedRun:
    """Everything that can refuse the run, checked before any work: backend, device, dataset,
    frame cache, the backend's limits, the emulation profile."""
    scenario = loaded.scenario
    backend: Backend = require_backend(scenario.pipeline.backend)
    emulated = scenario.training.compute == "emulated"
    if emulated and scenario.training.device != "cpu":
        # More emulated accelerators than GPUs share them for their host-to-device copies.
        local_rank = _shared_gpu(local_rank)
    device = resolve_device(scenario.training.device, scenario.training.precision, local_rank)
    dataset_manifest = dataset_index(scenario.dataset, str(loaded.file))
    cache_manifest = read_cache_manifest(scenario) if scenario.pipeline.mode == "cached" else None
    source = build_source(scenario, dataset_manifest, cache_manifest)
    backend.check_scenario(source, device.is_cuda)
    plan: SamplePlan
    if scenario.dataset.kind == "records":
        plan = RecordPlan(source.files, scenario.training.seed, scenario.pipeline.shuffle)
    else:
        plan = SamplePlan(
            source.files,
            scenario.pipeline.crop,
            scenario.training.seed,
            scenario.pipeline.shuffle,
            scenario.pipeline.sequence_length,
        )
    times = None
    if emulated:
        times = compute_times(scenario, int(dataset_manifest["classes"]))
    return PreparedRun(
        loaded,
        backend,
        device,
        dataset_manifest,
        cache_manifest,
        source,
        plan,
        times,
        preprocess_plan(scenario, source),
    )


def preprocess_plan(scenario: Scenario, source: Source) -> PreprocessPlan | None:
    """Emulated preprocessing's profile, checked against the scenario's data and crop, with the
    cores its waits share: a server's (``training.server``), ``pipeline.preprocess_cores``, or
    this host's."""
    pipeline, server = scenario.pipeline, scenario.training.server
    if pipeline.preprocess != "emulated":
        return None
    remove_stale_slots()  # those of a killed run: their slots would never come back
    assert pipeline.preprocess_profile is not None  # the scenario's validation sees to it
    profile = read_preprocess_profile(Path(pipeline.preprocess_profile))
    wanted = source_settings(source, scenario.dataset.kind, pipeline.crop, pipeline.batch_size)
    differences = profile.settings.differences(wanted)
    if differences:
        raise HarnessError(
            f"pipeline.preprocess_profile {profile.source} was measured for other data: "
            f"{'; '.join(differences)} (calibrate one with harness calibrate --preprocess)"
        )
    if server is not None:
        return PreprocessPlan(profile, pipeline.preprocess_speed, server.cores, server.accelerators)
    cores = pipeline.preprocess_cores or available_cpus()
    return PreprocessPlan(profile, pipeline.preprocess_speed, cores, None)


def _shared_gpu(local_rank: int) -> int:
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    return local_rank % count if count else local_rank


def local_accelerators(scenario: Scenario) -> int:
    """Emulated accelerators this process launches: 1 under torchrun (torchrun launched them:
    ``accelerators`` must then match --nproc-per-node) and for real runs."""
    training = scenario.training
    if training.compute != "emulated":
        return 1
    per_node = os.environ.get("LOCAL_WORLD_SIZE")
    if per_node is not None:
        if training.accelerators not in (None, int(per_node)):
            raise HarnessError(
                f"training.accelerators {training.accelerators}: under torchrun each process is "
                f"one accelerator and --nproc-per-node is {per_node}; leave accelerators unset "
                "or make them equal"
            )
        return 1
    return training.accelerators or 1


def prepare_page_cache(prepared: PreparedRun, *, act: bool) -> pagecache.PageCacheRecord:
    scenario = prepared.scenario
    return pagecache.prepare(
        scenario.pipeline.page_cache,
        prepared.source.data_files(),
        Path(scenario.dataset.path),
        act=act,
    )


def host_key(run_id: str) -> str:
    """What names the files a run's processes on one host share in /dev/shm (the page ledger,
    the miss counter, the preprocessing slots): the run's id, with torchrun's node rank where
    it set one, since nodes may share one /dev/shm (containers or network namespaces on one
    machine, as in the lab) and must not share one ledger."""
    node = os.environ.get("GROUP_RANK")
    return run_id if node is None else f"{run_id}-node{node}"


def read_root(scenario: Scenario) -> tuple[Path, str]:
    """The folder a run reads its samples from, and what it is: the frame cache of a cached
    video scenario, the dataset otherwise."""
    cache = scenario.pipeline.cache
    if scenario.pipeline.mode == "cached" and cache is not None:
        return Path(cache.path), "frame cache"
    return Path(scenario.dataset.path), "dataset"


def collectors_for(scenario: Scenario, t0: float, ranks: Ranks, host: str) -> list[Collector]:
    """The scenario's collectors for this process; ``host`` names the host's shared files (the
    miss counter: ``host_key``)."""
    names = scenario.collectors.enabled
    if ranks.local_rank != 0:  # one process per machine samples what the whole machine shares
        names = [n for n in names if n not in PER_HOST]
    root, role = read_root(scenario)
    return make_collectors(
        names,
        rate_hz=scenario.collectors.rate_hz,
        root_pid=os.getpid(),
        dataset_path=root,
        t0=t0,
        role=role,
        missed_counter=missed_bytes_path(host),
        host_counters=ranks.local_rank == 0,
        options={"prometheus": scenario.collectors.prometheus.model_dump()},
    )
