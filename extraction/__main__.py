import os
import sys

# Busy-waiting OpenMP threads starve each other when cores are shared (as in training/__main__.py);
# set before torch is imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from extraction.cli import main

sys.exit(main())
