"""Entry to the numba kernels, on torch's thread count.

Launching numba's OpenMP threading layer (it loads the system libgomp, next to the one torch bundles) resets
torch's OpenMP thread count to all cores: after irregconv's first rulebook build ``torch.set_num_threads(1)``
had silently become 2.
Every kernel module is therefore fetched through :func:`kernels`, which launches numba's layer, sets
numba's thread count to torch's, and gives torch its own count back.
"""
import importlib

import torch


def kernels(module: str):
    """Import the kernel module ``module`` after matching numba's thread count to torch's."""
    import numba
    threads = torch.get_num_threads()
    numba.set_num_threads(max(1, min(threads, numba.config.NUMBA_NUM_THREADS)))
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return importlib.import_module(module)
