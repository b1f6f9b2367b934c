import os
import sys

# Busy-waiting OpenMP threads starve each other when cores are shared (DDP ranks, loader workers,
# other jobs): on a loaded 2-core machine a GCN scatter ran 140x slower with the default policy.
# Must be set before torch loads its OpenMP runtime; an explicit user setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from training.cli import main

sys.exit(main())
