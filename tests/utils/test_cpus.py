"""Cores a process may use: affinity capped by the cgroup CPU quota (containers)."""

from __future__ import annotations

import os

import pytest

from skfairtune._images._decode import _n_threads
from skfairtune._utils import _cpus
from skfairtune._utils._cpus import available_cpus, cgroup_cpu_quota
from skfairtune.distributed import _pool

AFFINITY = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def _fake_cgroup(root, files: dict):
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


@pytest.mark.parametrize("files, quota", [
    ({"cpu.max": "max 100000\n"}, None),                     # v2, no limit
    ({"cpu.max": "100000 100000\n"}, 1.0),                   # docker --cpus=1
    ({"cpu.max": "150000 100000\n"}, 1.5),
    ({"cpu.max": "garbage\n"}, None),
    ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, None),   # v1, no limit
    ({"cpu/cpu.cfs_quota_us": "50000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 0.5),
    ({"cpu,cpuacct/cpu.cfs_quota_us": "200000\n", "cpu,cpuacct/cpu.cfs_period_us": "100000\n"}, 2.0),
    ({}, None),                                              # no cgroup files (macOS, Windows)
])
def test_cgroup_cpu_quota_reads_v1_and_v2(tmp_path, files, quota):
    assert cgroup_cpu_quota(_fake_cgroup(tmp_path, files)) == quota


@pytest.mark.parametrize("files, expected", [
    ({"cpu.max": "100000 100000\n"}, 1),
    ({"cpu.max": "50000 100000\n"}, 1),        # half a CPU still runs one thread
    ({"cpu.max": "150000 100000\n"}, min(2, AFFINITY)),  # rounded up, as loky does
    ({"cpu.max": "6400000 100000\n"}, AFFINITY),          # a quota above the affinity changes nothing
    ({}, AFFINITY),
])
def test_available_cpus_is_affinity_capped_by_the_quota(tmp_path, files, expected):
    assert available_cpus(_fake_cgroup(tmp_path, files)) == expected


def test_workers_and_decoding_threads_honour_the_quota(tmp_path, monkeypatch):
    monkeypatch.setattr(_cpus, "CGROUP_ROOT", _fake_cgroup(tmp_path, {"cpu.max": "100000 100000\n"}))
    assert _pool.available_cpus() == 1
    assert _pool.resolve_n_jobs(-1) == 1
    assert _n_threads(None, 1000) == 1 and _n_threads(-1, 1000) == 1
