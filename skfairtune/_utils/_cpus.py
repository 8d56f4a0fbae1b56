"""How many cores this process may use: its CPU affinity and its cgroup CPU quota.

``os.sched_getaffinity`` sees Slurm and ``taskset`` allocations, but not a
container's CPU quota (``docker run --cpus=2``, Kubernetes ``limits.cpu``),
which is a cgroup setting: a process there sees every core of the host and,
running one thread per core, is throttled. Both are read here, as loky (and so
joblib and scikit-learn) does, and the smaller wins; a fractional quota
rounds up (1.5 CPUs -> 2), as loky rounds it.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

__all__ = ["available_cpus", "cgroup_cpu_quota"]

#: Where Linux mounts the cgroup file systems (inside a container: the container's own group).
CGROUP_ROOT = Path("/sys/fs/cgroup")


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except (OSError, UnicodeDecodeError):
        return None


def cgroup_cpu_quota(root: str | os.PathLike | None = None) -> float | None:
    """CPUs the cgroup quota allows (e.g. 1.5), or None when there is no quota.

    Reads cgroup v2's ``cpu.max`` ("quota period", or "max period" for none),
    then cgroup v1's ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us`` (-1: none)
    under ``cpu/`` or ``cpu,cpuacct/``.

    Parameters
    ----------
    root : path, default=None
        The cgroup mount point; None reads :data:`CGROUP_ROOT` (a test passes
        a folder of fake files, or patches it).

    Examples
    --------
    >>> quota = cgroup_cpu_quota()
    >>> quota is None or quota > 0
    True
    """
    root = Path(CGROUP_ROOT if root is None else root)
    text = _read(root / "cpu.max")
    if text is not None:
        fields = text.split()
        if len(fields) == 2 and fields[0] != "max":
            try:
                quota, period = int(fields[0]), int(fields[1])
            except ValueError:
                return None
            return quota / period if quota > 0 and period > 0 else None
        return None
    for folder in ("cpu", "cpu,cpuacct", "cpuacct,cpu"):
        quota, period = _read(root / folder / "cpu.cfs_quota_us"), _read(root / folder / "cpu.cfs_period_us")
        if quota is None or period is None:
            continue
        try:
            quota_us, period_us = int(quota), int(period)
        except ValueError:
            return None
        return quota_us / period_us if quota_us > 0 and period_us > 0 else None
    return None


def available_cpus(cgroup_root: str | os.PathLike | None = None) -> int:
    """Cores this process may run on: its affinity, capped by its cgroup CPU quota.

    Parameters
    ----------
    cgroup_root : path, default=None
        The cgroup mount point (see :func:`cgroup_cpu_quota`).

    Returns
    -------
    n_cpus : int
        At least 1.

    Examples
    --------
    >>> available_cpus() >= 1
    True
    """
    try:
        n_cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        n_cpus = os.cpu_count() or 1
    quota = cgroup_cpu_quota(cgroup_root)
    if quota is not None:
        n_cpus = min(n_cpus, math.ceil(quota))
    return max(1, n_cpus)
