"""`--threads`: a number, `auto` (one thread per core other processes leave idle) or torch's default."""

from __future__ import annotations

import pytest
import torch

from nlparena import cpu_load
from nlparena.cli import NlpArenaCLI, threads
from tests.conftest import QUIET, TINY_DATA, TINY_MODEL


@pytest.fixture(autouse=True)
def _keep_torch_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_threads_key_sets_torchs_intra_op_threads():
    NlpArenaCLI(args=[*TINY_MODEL, "--data=Copy", *TINY_DATA, *QUIET, "--threads=1"], run=False)
    assert torch.get_num_threads() == 1


@pytest.mark.parametrize(("idle", "expected"), [(1.95, 2), (1.0, 1), (1.5, 1), (0.1, 1), (3.9, 2)])
def test_auto_takes_one_thread_per_idle_core(monkeypatch, idle, expected):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(threads, "available_cores", lambda: 2)
    monkeypatch.setattr(threads, "idle_cores", lambda: idle)
    assert threads.auto_threads() == expected


def test_auto_keeps_torchs_default_when_omp_num_threads_is_set(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setattr(threads, "idle_cores", lambda: 2.0)
    assert threads.auto_threads() == torch.get_num_threads()


def test_idle_cores_is_measured_within_the_cores_of_this_machine():
    idle = cpu_load.idle_cores()
    if idle is not None:  # None off Linux
        assert idle <= cpu_load.available_cores() + 0.05
