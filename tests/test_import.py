"""``import irregconv`` as users write it, in a fresh interpreter: every subpackage is an attribute, the names
the README and PyG / spconv habits use resolve, ``import irregconv`` itself imports no optional package (spconv,
torch_geometric, open3d), and the spconv drop-in never imports the real spconv."""
import subprocess
import sys

import pytest

OPTIONAL = ("spconv", "cumm", "torch_geometric", "open3d")


def run_python(code: str) -> str:
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_subpackages_are_attributes_after_import_irregconv():
    out = run_python(
        "import sys, irregconv\n"
        f"print(sorted(m for m in {OPTIONAL!r} if m in sys.modules))\n"
        "print(irregconv.nn.SubMConv3d.__name__, irregconv.nn.GCNConv.__name__, irregconv.nn.SparseConv3d.__name__)\n"
        "print(irregconv.functional.gcn_norm.__name__, irregconv.functional.sparse_conv.__name__)\n"
        "print(irregconv.data.collate.__name__, irregconv.data.voxelize.__name__, irregconv.io.save_atomic.__name__)\n"
        "print(irregconv.engine.__name__, irregconv.hashing.__name__, irregconv.rulebook.__name__)\n"
        "print(irregconv.SparseTensor.__name__, irregconv.__version__)\n"
        "print(irregconv.compat.spconv.SubMConv3d.__name__)\n"
        "print(sorted(m for m in ('spconv', 'cumm', 'open3d') if m in sys.modules))\n"
        "print(set(irregconv.__all__) <= set(dir(irregconv)))\n")
    assert out.splitlines() == ["[]", "SubMConv3d GCNConv SparseConv3d", "gcn_norm sparse_conv",
                                "collate voxelize save_atomic", "irregconv.engine irregconv.hashing irregconv.rulebook",
                                "SparseTensor 0.1.0", "SubMConv3d", "[]", "True"]


@pytest.mark.parametrize("statement", ["from irregconv import *", "import irregconv.nn as icnn",
                                       "from irregconv.nn import GCNConv, SubMConv3d"])
def test_import_forms(statement):
    run_python(f"{statement}\nimport irregconv\nassert irregconv.nn.GCNConv and irregconv.SparseTensor\n")


def test_unknown_attribute_is_an_attribute_error():
    import irregconv
    with pytest.raises(AttributeError, match="module 'irregconv' has no attribute 'nonexistent'"):
        irregconv.nonexistent  # noqa: B018


def test_sparse_and_dense_modules_do_not_import_pyg():
    out = run_python("import sys\nfrom irregconv.nn import SubMConv3d, Conv2d\nimport irregconv.nn.sparse\n"
                     "print('torch_geometric' in sys.modules)\n"
                     "from irregconv.nn import GCNConv\nprint(GCNConv.__module__)\n")
    assert out.splitlines() == ["False", "irregconv.nn.graph.gcn_conv"]
