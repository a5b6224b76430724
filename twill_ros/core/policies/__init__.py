"""Scheduling policies by name: ``POLICIES[name]()`` / ``make_policy(name)``."""

from __future__ import annotations

from collections.abc import Callable

from twill_ros.native import use_native

use_native(__name__, __path__)

from twill_ros.core.policies.base import Policy  # noqa: E402  (after use_native)
from twill_ros.core.policies.baselines import (  # noqa: E402
    Dream,
    Edf,
    FcfsAffinity,
    GpuFifo,
    MinFinish,
)
from twill_ros.core.policies.twill import TwillPolicy  # noqa: E402

POLICIES: dict[str, Callable[[], Policy]] = {
    "twill": TwillPolicy,
    "gpu_fifo": GpuFifo,
    "fcfs_affinity": FcfsAffinity,
    "edf": Edf,
    "min_finish": MinFinish,
    "dream": Dream,
    "twill_no_freeze": lambda: TwillPolicy("twill_no_freeze", freezing=False),
    "twill_no_dvfs": lambda: TwillPolicy("twill_no_dvfs", dvfs=False),
    "twill_no_migration": lambda: TwillPolicy("twill_no_migration", migration=False),
}


def make_policy(name: str) -> Policy:
    """A fresh policy instance; ValueError naming the known policies otherwise."""
    try:
        factory = POLICIES[name]
    except KeyError:
        raise ValueError(f"unknown policy {name!r}; known: {', '.join(POLICIES)}") from None
    return factory()
