"""A short extraction typed as the README shows, with and without ``OMP_WAIT_POLICY`` set.

    python benchmarks/bench_thread_policy.py --num-samples 10 --code /tmp/before .

``python -m extraction --num_samples N --output_dir TMP`` (the packaged SmolLM2-135M on the
bundled demo questions) runs in a fresh process for each checkout (``--code``: e.g. a
``git archive`` of the commit before the entry points set the policy, and this one) and each
environment: ``OMP_WAIT_POLICY`` unset (a user's shell) and ``PASSIVE`` (what ``make`` exports).
Reported per run: wall and CPU seconds (user + system of the child) and the 1-minute load
average before and after. This script sets no policy itself: it measures both.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CASES = {"unset": None, "PASSIVE": "PASSIVE"}


def extract(code: Path, policy: str | None, num_samples: int, out: Path) -> dict:
    """Wall and CPU seconds of one ``python -m extraction`` run of ``code`` under ``policy``."""
    env = {key: value for key, value in os.environ.items() if key != "OMP_WAIT_POLICY"}
    env["PYTHONPATH"] = str(code)
    if policy is not None:
        env["OMP_WAIT_POLICY"] = policy
    command = [sys.executable, "-m", "extraction", "--num_samples", str(num_samples)]
    command += ["--output_dir", str(out)]
    load_before = os.getloadavg()[0]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(command, cwd=code, env=env, check=True, capture_output=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {
        "wall_s": round(wall, 1),
        "cpu_s": round(cpu, 1),
        "load_before": load_before,
        "load_after": os.getloadavg()[0],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--num-samples", type=int, default=10)
    parser.add_argument("--code", type=Path, nargs="+", default=[REPO], help="checkouts to run")
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    print(f"# {platform.node()}, {os.cpu_count()} CPUs, {args.num_samples} demo questions")
    with tempfile.TemporaryDirectory(prefix="bench_thread_policy.") as tmp:
        for round_ in range(args.rounds):
            for code in args.code:
                for case, policy in CASES.items():
                    out = Path(tmp) / f"{round_}_{code.name}_{case}"
                    result = extract(code.resolve(), policy, args.num_samples, out)
                    row = {"code": str(code), "OMP_WAIT_POLICY": case, **result}
                    print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
