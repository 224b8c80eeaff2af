#!/usr/bin/env python3
"""Write the speed file and stats sidecar for one segbench training log.

Usage: python analysis_log.py MODEL_NAME LOG_FILE SPEED_FILE
           [--batch-size N] [--gpu-num N] [--run-mode sp|mp]

All logic lives in :mod:`segbench.analysis`; this works from any current directory.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from segbench.analysis import main  # noqa: E402  (needs the path set above)

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
