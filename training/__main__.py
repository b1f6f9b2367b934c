import sys

from common import set_thread_policy

set_thread_policy()

from training.cli import main

sys.exit(main())
