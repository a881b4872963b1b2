"""What l1_mock/cli_common decides for every program beyond its messages (those are tested with
each program's CLI)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from l1_mock.cli_common import usable_cpus


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="no CPU affinity on this OS")
def test_usable_cpus_follows_the_affinity_mask_not_the_host() -> None:
    """A process pinned to one CPU (taskset, a container's cpuset) sizes its pools for one, while
    os.cpu_count() still counts every CPU of the host."""
    assert usable_cpus() == len(os.sched_getaffinity(0))
    one = min(os.sched_getaffinity(0))
    code = (f"import os; os.sched_setaffinity(0, {{{one}}}); from l1_mock.cli_common import usable_cpus; "
            "from verifier.signers import default_pool_size; "
            "print(usable_cpus(), default_pool_size(usable_cpus()), os.cpu_count() >= 1)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.split() == ["1", "0", "True"]
