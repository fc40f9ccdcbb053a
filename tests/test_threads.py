"""irregconv's numba kernels must not change torch's thread count (numba's OpenMP layer shares torch's runtime)."""
import subprocess
import sys

SCRIPT = """
import torch
torch.set_num_threads(1)
import irregconv
from irregconv.rulebook import KernelRegion, build_strided_rulebook, build_subm_rulebook
from irregconv.engine import gather_scatter
from irregconv.testing import random_coords
coords = random_coords(3000, (30, 30, 30), 1)
rb = build_subm_rulebook(coords, (30, 30, 30), 1, KernelRegion.cube(3, 3), (1, 1, 1))
build_strided_rulebook(coords, (30, 30, 30), 1, KernelRegion.cube(3, 3), (2, 2, 2), (1, 1, 1), (1, 1, 1))
gather_scatter(torch.randn(3000, 16), torch.randn(27, 16, 16), rb)
print(torch.get_num_threads())
"""


def test_kernels_keep_torch_thread_count():
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "1"
