"""Suite-wide set-up: one torch thread per test process.

The suite runs in two pytest-xdist workers on a 2-core machine; a torch thread pool per worker
on top would oversubscribe the cores. Tests that compare thread counts set them explicitly.
"""

import torch

torch.set_num_threads(1)
