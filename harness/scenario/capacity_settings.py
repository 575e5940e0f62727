"""The settings of a capacity search, defined once: the defaults and bounds that the suite's
``capacity`` key, ``harness capacity``'s options and the JSON Schema all take from here.

A suite validates them as any scenario section (one line per problem, naming the key); the CLI
builds its options from the fields (the default and bounds in the help) and validates what it was
given with the same model, so ``--min-busy 120`` is refused as ``min_busy: 120`` in a suite is.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

# The scenario sections' base (``harness.scenario.model.Model``) has the same configuration; that
# module imports this one, so the base is not shared.
_CONFIG = ConfigDict(extra="forbid", frozen=True, strict=True)
ProfileName = Annotated[str, Field(min_length=1, max_length=4096)]  # 4096: Linux's longest path


class CapacitySettings(BaseModel):
    """``harness suite`` runs a capacity search of each scenario instead of fixed runs (see
    ``harness capacity``), with these settings; ``harness capacity`` takes the same as options."""

    model_config = _CONFIG

    profile: Annotated[
        ProfileName | None,
        Field(description="sets training.profile of every scenario (a shipped profile or a file)"),
    ] = None
    min_busy: Annotated[
        float, Field(gt=0, le=100, description="mean busy % a count must reach to pass")
    ] = 90.0
    min_busy_each: Annotated[
        float, Field(gt=0, le=100, description="busy % every accelerator must reach to pass")
    ] = 85.0
    max_accelerators: Annotated[
        int, Field(ge=1, le=1024, description="the most accelerators probed, per host")
    ] = 64
    probe_s: Annotated[float, Field(gt=0, le=86400, description="measured seconds per probe")] = (
        10.0
    )
    repeat: Annotated[
        int,
        Field(
            ge=1,
            le=100,
            description="probes of the last passing and first failing count, judged on their "
            "median",
        ),
    ] = 3
    ceiling_s: Annotated[
        float, Field(gt=0, le=86400, description="seconds of the read ceiling")
    ] = 10.0
    server: Annotated[
        str | None,
        Field(
            pattern=r"^[1-9][0-9]{0,3}x[1-9][0-9]{0,4}$",
            description="a server shape, ACCELERATORSxCORES (e.g. 8x40, a DGX-1): the search "
            "grows in whole servers and answers in servers; with emulated preprocessing each "
            "server's waits share its cores",
        ),
    ] = None
    ceiling_fio: Annotated[
        bool,
        Field(
            description="also read the files with fio (settings that read every byte), its rate "
            "recorded beside the harness's own ceiling as a comparison"
        ),
    ] = False


def server_shape(text: str) -> tuple[int, int]:
    """``8x40`` -> (8 accelerators, 40 cores); the setting's pattern has checked the text."""
    accelerators, cores = text.split("x")
    return int(accelerators), int(cores)


def bounds_text(name: str) -> str:
    """The bounds of a numeric setting in words, e.g. ``above 0, at most 100``."""
    words = {"gt": "above", "ge": "at least", "lt": "below", "le": "at most"}
    parts = []
    for constraint in CapacitySettings.model_fields[name].metadata:
        for key, word in words.items():
            limit = getattr(constraint, key, None)
            if limit is not None:
                parts.append(f"{word} {limit:g}")
    return ", ".join(parts)
