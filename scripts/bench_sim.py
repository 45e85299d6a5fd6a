#!/usr/bin/env python3
"""Scale benchmark of the modelled simulator:
`python scripts/bench_sim.py [--nodes 1000 --blocks 10000 --json]`."""

import sys

from consensus.sim.bench import main

if __name__ == "__main__":
    sys.exit(main())
