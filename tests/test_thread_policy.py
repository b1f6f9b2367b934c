"""Every entry point sets ``OMP_WAIT_POLICY`` and ``OPENBLAS_NUM_THREADS`` before torch or
numpy loads (common/threads.py).

Each entry point runs with ``--help`` in one child process whose import system stops at the
first ``import torch`` or ``import numpy`` and records the variables at that moment; nothing
loads either, so the whole sweep takes about a second.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.helpers import REPO

PROBE = r"""
import importlib.abc, json, os, runpy, sys

class TorchImported(Exception):
    pass

def variables():
    return os.environ.get("OMP_WAIT_POLICY"), os.environ.get("OPENBLAS_NUM_THREADS")

class StopAtTorch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name in ("torch", "numpy"):
            raise TorchImported(*variables())
        return None

sys.meta_path.insert(0, StopAtTorch())
user_setting = os.environ.get("OMP_WAIT_POLICY")
loaded, path = set(sys.modules), list(sys.path)
seen = {}
for target in sys.argv[1:]:
    os.environ.pop("OMP_WAIT_POLICY", None)
    os.environ.pop("OPENBLAS_NUM_THREADS", None)
    if user_setting is not None:
        os.environ["OMP_WAIT_POLICY"] = user_setting
    sys.argv = [target, "--help"]
    try:
        if target.endswith(".py"):
            sys.path.insert(0, os.path.dirname(os.path.abspath(target)))  # as `python FILE` does
            runpy.run_path(target, run_name="__main__")
        else:
            runpy.run_module(target, run_name="__main__", alter_sys=True)
        seen[target] = {"torch": False, "policy": variables()[0], "blas": variables()[1]}
    except TorchImported as exc:
        seen[target] = {"torch": True, "policy": exc.args[0], "blas": exc.args[1]}
    except SystemExit:
        seen[target] = {"torch": False, "policy": variables()[0], "blas": variables()[1]}
    for name in set(sys.modules) - loaded:  # our own modules run afresh for the next target
        file = getattr(sys.modules[name], "__file__", None) or ""
        if file.startswith(os.getcwd()) and "site-packages" not in file:
            del sys.modules[name]
    sys.path[:] = path
print(json.dumps(seen))
"""

MODULES = ["extraction", "graphs", "training"]
SCRIPTS = sorted(
    str(path.relative_to(REPO))
    for folder in ("examples", "benchmarks")
    for path in (REPO / folder).glob("*.py")
)
# These load no torch: two run children that import ``extraction`` from another checkout (the
# parent sets the policy after parsing arguments, the children inherit it); two measure a
# command with and without the policy.
NO_POLICY_OF_THEIR_OWN = {
    "benchmarks/bench_blas_threads.py",
    "benchmarks/bench_final_pass.py",
    "benchmarks/bench_writer_memory.py",
    "benchmarks/bench_thread_policy.py",
}


def probe(user_setting: str | None, targets: list[str]) -> dict[str, dict]:
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("OMP_WAIT_POLICY", "OPENBLAS_NUM_THREADS")
    }
    env["PYTHONPATH"] = str(REPO)
    if user_setting is not None:
        env["OMP_WAIT_POLICY"] = user_setting
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *targets],
        cwd=REPO, env=env, capture_output=True, text=True, check=True, timeout=300,
    )  # fmt: skip
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_every_entry_point_sets_passive_before_torch_loads():
    seen = probe(None, MODULES + SCRIPTS)
    wrong = {
        target: got
        for target, got in seen.items()
        if got["torch"] and (got["policy"], got["blas"]) != ("PASSIVE", "1")
    }
    assert wrong == {}
    # The three commands and the example load torch at once: the check above covered them.
    assert all(seen[target]["torch"] for target in [*MODULES, "examples/custom_detector.py"])
    unset = {t for t, got in seen.items() if got["policy"] != "PASSIVE"} - NO_POLICY_OF_THEIR_OWN
    assert unset == set()


def test_the_users_setting_wins():
    seen = probe("ACTIVE", MODULES)
    assert {target: got["policy"] for target, got in seen.items()} == dict.fromkeys(
        MODULES, "ACTIVE"
    )
