"""Cross-cutting hostile-input and environment cases (issue 13)."""

import json
import os
import subprocess
import sys

import hopkit
import pytest
from hopkit import _backend

# Reports (hopkit.get_num_threads(), the threads a native parallel region really gets,
# config()["threads"]) at each step; torch's import and set_num_threads must not move them.
THREADS_PROBE = """
import json, sys
torch_first = sys.argv[1] == "torch_first"
if torch_first:
    import torch
import hopkit
from hopkit import _backend
nat = _backend.native_module()
now = lambda: [hopkit.get_num_threads(), nat.threads_in_parallel_region(),
               hopkit.config()["threads"]]
seen = [now()]
import torch
seen.append(now())
torch.set_num_threads(1)
seen.append(now())
hopkit.set_num_threads(2)
torch.set_num_threads(1)
seen.append(now())
print(json.dumps(seen))
"""


def _run_probe(env_extra, order):
    env = {k: v for k, v in os.environ.items()
           if k not in ("OMP_NUM_THREADS", "HOPKIT_NUM_THREADS")}
    env.update(env_extra, PYTHONPATH=os.pathsep.join(sys.path))
    return subprocess.run([sys.executable, "-c", THREADS_PROBE, order], capture_output=True,
                          text=True, env=env, timeout=300)


@pytest.fixture
def native_and_torch():
    if _backend.native_module() is None:
        pytest.skip("native extension not built")
    pytest.importorskip("torch")


@pytest.mark.parametrize("order", ["hopkit_first", "torch_first"])
@pytest.mark.parametrize("env, start", [({"OMP_NUM_THREADS": "3"}, 3),
                                        ({"OMP_NUM_THREADS": "3", "HOPKIT_NUM_THREADS": "4"}, 4),
                                        ({"HOPKIT_NUM_THREADS": "3"}, 3)])
def test_thread_count_is_hopkits_own(native_and_torch, env, start, order):
    p = _run_probe(env, order)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout) == [[start] * 3] * 3 + [[2] * 3]


def test_bad_hopkit_num_threads_is_a_clear_error(native_and_torch):
    p = _run_probe({"HOPKIT_NUM_THREADS": "0"}, "hopkit_first")
    assert p.returncode != 0
    assert "ValueError: hopkit: HOPKIT_NUM_THREADS must be an integer >= 1, got '0'" in p.stderr


def test_set_num_threads_validates():
    with pytest.raises(ValueError, match="set_num_threads: n must be >= 1, got 0"):
        hopkit.set_num_threads(0)
