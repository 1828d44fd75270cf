"""A TPU slice as plain data: its name, accelerator type, zone, project, provisioning and
runtime image, with the host count and default runtime derived from the accelerator type.

Accelerator types follow gcloud's names. v2, v3, v4 and v5p count TensorCores (`v5p-64` is 32
chips); v5e (`v5litepod-N`) and v6e (`v6e-N`) count chips. A v2/v3 host drives 8 cores, a
v4/v5p host 4 chips (8 cores), and a multi-host v5e/v6e slice 4 chips per host (their 1-, 4-
and 8-chip slices are one host). The runtime defaults are the TPU VM images Google documents
for JAX on each generation.

Only the sizes Google's Cloud TPU documentation publishes for each generation are accepted
(docs/tpu.md cites the pages): v2 and v3 list theirs; v5e and v6e have the 2D slices 1x1,
2x2, 2x4, 4x4, 4x8, 8x8, 8x16 and 16x16 chips; v4 and v5p have 2x2x1, 2x2x2, 2x2x4 and 2x4x4
below one cube, and whole 4x4x4-chip cubes from one cube up (v4: a pod of 4x4x4 cubes;
v5p: at most 16x16x24 chips, 4x4x6 cubes).
"""

from __future__ import annotations

import dataclasses
import os
import re

from lmjax.errors import ConfigError

PROVISIONING = ("on-demand", "spot", "reserved")


@dataclasses.dataclass(frozen=True)
class Generation:
    family: str  # the accelerator-type prefix gcloud uses, e.g. "v5litepod"
    counts: str  # "cores" or "chips": what the number after the dash counts
    per_host: int  # that unit per host on a multi-host slice
    single_host_max: int  # slices up to this size are one host
    runtime: str  # default TPU VM software version
    sizes: tuple[int, ...]  # the published slice sizes, in `counts`


def _cube_sizes(max_cubes: tuple[int, int, int]) -> tuple[int, ...]:
    """Cores of the sub-cube slices (2x2x1, 2x2x2, 2x2x4, 2x4x4 chips) and of every slice of
    whole 4x4x4-chip cubes (64 chips, 128 cores each) up to `max_cubes` along each axis."""
    cubes = {a * b * c for a in range(1, max_cubes[0] + 1) for b in range(1, max_cubes[1] + 1)
             for c in range(1, max_cubes[2] + 1)}
    return (8, 16, 32, 64, *sorted(128 * n for n in cubes))


_2D_CHIPS = (1, 4, 8, 16, 32, 64, 128, 256)  # 1x1, 2x2, 2x4, 4x4, 4x8, 8x8, 8x16, 16x16
GENERATIONS = {
    "v2": Generation("v2", "cores", 8, 8, "tpu-ubuntu2204-base", (8, 32, 128, 256, 512)),
    "v3": Generation("v3", "cores", 8, 8, "tpu-ubuntu2204-base",
                     (8, 32, 64, 128, 256, 512, 1024, 2048)),
    "v4": Generation("v4", "cores", 8, 8, "tpu-ubuntu2204-base", _cube_sizes((4, 4, 4))),
    "v5e": Generation("v5litepod", "chips", 4, 8, "v2-alpha-tpuv5-lite", _2D_CHIPS),
    "v5p": Generation("v5p", "cores", 8, 8, "v2-alpha-tpuv5", _cube_sizes((4, 4, 6))),
    "v6e": Generation("v6e", "chips", 4, 8, "v2-alpha-tpuv6e", _2D_CHIPS),
}
_BY_FAMILY = {gen.family: name for name, gen in GENERATIONS.items()}
_TYPE = re.compile(r"^([a-z0-9]+)-(\d+)$")


def known_types() -> str:
    """The accepted accelerator-type patterns, for error messages."""
    return ", ".join(f"{gen.family}-N" for gen in GENERATIONS.values())


@dataclasses.dataclass(frozen=True)
class TpuTarget:
    """Where a slice lives: what every command but `create` needs to address it."""

    name: str
    zone: str
    project: str = ""

    def __post_init__(self) -> None:
        _check_name(self.name)
        if not self.zone:
            raise ConfigError(missing_zone_message())


@dataclasses.dataclass(frozen=True)
class TpuSpec:
    """One TPU slice to create: a queued resource and the TPU VM node it provisions, both
    named `target.name`."""

    target: TpuTarget
    accelerator_type: str
    provisioning: str = "on-demand"
    runtime_version: str = ""  # empty: the generation's default

    def __post_init__(self) -> None:
        _parse_type(self.accelerator_type)
        if self.provisioning not in PROVISIONING:
            raise ConfigError(f"provisioning {self.provisioning!r} is not one of {', '.join(PROVISIONING)}")

    @property
    def generation(self) -> str:
        return _parse_type(self.accelerator_type)[0]

    @property
    def size(self) -> int:
        """The number in the accelerator type (cores or chips, by generation)."""
        return _parse_type(self.accelerator_type)[1]

    @property
    def hosts(self) -> int:
        """TPU VM workers in the slice: the processes `--worker=all` reaches."""
        gen = GENERATIONS[self.generation]
        return 1 if self.size <= gen.single_host_max else self.size // gen.per_host

    @property
    def chips(self) -> int:
        gen = GENERATIONS[self.generation]
        return self.size if gen.counts == "chips" else max(1, self.size // 2)

    @property
    def devices(self) -> int:
        """JAX devices in the slice: one per core on v2/v3, one per chip from v4 on."""
        return self.size if self.generation in ("v2", "v3") else self.chips

    @property
    def runtime(self) -> str:
        return self.runtime_version or GENERATIONS[self.generation].runtime


def _parse_type(accelerator_type: str) -> tuple[str, int]:
    """(generation, size) of an accelerator type; a one-line error naming the families otherwise."""
    match = _TYPE.match(accelerator_type)
    family = match.group(1) if match else ""
    if family not in _BY_FAMILY:
        raise ConfigError(
            f"unknown TPU accelerator type {accelerator_type!r}: use one of {known_types()} "
            "(e.g. v5p-64, v5litepod-16, v6e-8)"
        )
    generation = _BY_FAMILY[family]
    size = int(match.group(2))
    gen = GENERATIONS[generation]
    if size not in gen.sizes:
        raise ConfigError(
            f"TPU accelerator type {accelerator_type!r} is not a published {family} slice: "
            f"use one of {', '.join(f'{family}-{n}' for n in gen.sizes)} ({gen.counts})"
        )
    return generation, size


def _check_name(name: str) -> None:
    """gcloud's resource-name rule, checked here so nothing is sent that it would refuse."""
    if not re.fullmatch(r"[a-z]([-a-z0-9]{0,61}[a-z0-9])?", name or ""):
        raise ConfigError(
            f"TPU name {name!r} is not valid: use lowercase letters, digits and dashes, "
            "starting with a letter (at most 63 characters)"
        )


def missing_zone_message() -> str:
    return "no zone given: pass --zone ZONE (e.g. us-east5-a) or set CLOUDSDK_COMPUTE_ZONE"


def default_zone() -> str:
    """gcloud's own zone variable, so `lmjax tpu` agrees with a configured gcloud."""
    return os.environ.get("CLOUDSDK_COMPUTE_ZONE", "")


def default_project() -> str:
    return os.environ.get("CLOUDSDK_CORE_PROJECT", "")
