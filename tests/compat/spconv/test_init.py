"""The package: spconv's module layout, ``__version__``, every name real code imports, and ``install()``
(checked in a child interpreter, so this process keeps the real spconv)."""
import inspect
import json
import subprocess
import sys

import pytest

from irregconv.compat import spconv
from irregconv.testing import with_package

needs_spconv = with_package("spconv")

#: the spconv names real model and data code imports (issue 15), by module
IMPORTED_NAMES = {
    "spconv": ["__version__"],
    "spconv.core": ["ConvAlgo"],
    "spconv.utils": ["Point2VoxelCPU1d", "Point2VoxelCPU2d", "Point2VoxelCPU3d", "Point2VoxelCPU4d"],
    "spconv.pytorch": ["SparseConvTensor", "SparseSequential", "SparseModule", "SubMConv3d", "SparseConv3d",
                       "SparseInverseConv3d", "SparseConvTranspose3d", "SparseMaxPool3d", "ToDense", "ConvAlgo",
                       "SparseIdentity", "SparseReLU", "SparseBatchNorm", "Identity", "RemoveGrid", "AddTable",
                       "ConcatTable", "JoinTable", "assign_name_for_sparse_modules"],
    "spconv.pytorch.modules": ["SparseModule", "SparseSequential", "SparseSyncBatchNorm", "is_sparse_conv",
                               "is_spconv_module"],
    "spconv.pytorch.conv": ["SparseConvolution", "SubMConv3d"],
    "spconv.pytorch.core": ["SparseConvTensor", "IndiceData"],
    "spconv.pytorch.pool": ["SparseMaxPool3d", "SparseAvgPool3d", "ALL_POOL_LAYERS"],
    "spconv.pytorch.functional": ["sparse_add"],
    "spconv.pytorch.hash": ["HashTable"],
    "spconv.pytorch.utils": ["PointToVoxel", "gather_features_by_pc_voxel_id"],
    "spconv.pytorch.tables": ["AddTable", "ConcatTable", "JoinTable", "AddTableMisaligned"],
    "spconv.pytorch.identity": ["Identity"],
    "spconv.pytorch.constants": ["PYTORCH_VERSION"],
    "spconv.constants": ["SPCONV_FX_TRACE_MODE"],
}

CHILD = """
import json, sys
from irregconv.compat import spconv as drop_in
drop_in.install()
found = {}
for module, names in json.loads(sys.argv[1]).items():
    exec(f"from {module} import " + ", ".join(names), globals())  # `from spconv.x import a, b` as user code writes it
    found[module] = sys.modules[module].__name__
import spconv
import spconv.pytorch as sp
found["version probe"] = hasattr(spconv, "__version__") and spconv.__version__ >= "2.0.0"  # mmdetection3d's
found["real spconv loaded"] = any("site-packages" in (getattr(m, "__file__", None) or "")
                                  for name, m in sys.modules.items() if name.split(".")[0] == "spconv")
found["Point2VoxelCPU3d"] = Point2VoxelCPU3d.__module__
found["sp.utils"] = sp.utils.__name__
print(json.dumps(found))
"""


def test_module_paths_detector_code_imports():
    assert spconv.pytorch.conv.SparseConvolution is spconv.SparseConvolution
    assert spconv.conv.SparseConvolution is spconv.SparseConvolution
    assert spconv.pytorch.core.SparseConvTensor is spconv.SparseConvTensor and spconv.modules.SparseModule is spconv.SparseModule
    assert spconv.pool.SparseMaxPool3d is spconv.SparseMaxPool3d and spconv.core.ConvAlgo is spconv.ConvAlgo
    assert spconv.pytorch.ConvAlgo is spconv.core.ConvAlgo
    for kind in ("SubMConv", "SparseConv", "SparseInverseConv", "SparseConvTranspose"):
        for dims in (1, 2, 3, 4):
            cls = getattr(spconv, f"{kind}{dims}d")
            assert issubclass(cls, spconv.conv.SparseConvolution) and issubclass(cls, spconv.SparseModule)
            assert cls.ndim == dims
    assert issubclass(spconv.SparseSequential, spconv.SparseModule) and issubclass(spconv.ToDense, spconv.SparseModule)


def test_install_resolves_spconv_imports(monkeypatch):
    for name in spconv.SPCONV_MODULE_NAMES:  # restored (or removed) when the test ends
        monkeypatch.setitem(sys.modules, name, sys.modules.get(name))
    spconv.install()
    import spconv.pytorch as imported
    from spconv.pytorch import SparseConvTensor
    from spconv.pytorch.conv import SparseConvolution
    assert imported is spconv.pytorch and SparseConvTensor is spconv.SparseConvTensor
    assert SparseConvolution is spconv.SparseConvolution
    spconv.install()  # a second call changes nothing
    assert sys.modules["spconv.utils"] is spconv.utils and sys.modules["spconv"] is spconv


def test_install_in_a_fresh_interpreter_resolves_every_import_line():
    result = subprocess.run([sys.executable, "-c", CHILD, json.dumps(IMPORTED_NAMES)], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout.strip().splitlines()[-1])
    for module in IMPORTED_NAMES:
        assert found[module] == "irregconv.compat.spconv" + module[len("spconv"):], module
    assert found["version probe"] is True and found["real spconv loaded"] is False
    assert found["Point2VoxelCPU3d"] == "irregconv.compat.spconv.utils"
    assert found["sp.utils"] == "irregconv.compat.spconv.pytorch.utils"


def test_version_and_names():
    assert spconv.__version__ == "2.3.8"
    for module, names in IMPORTED_NAMES.items():
        ours = sys.modules["irregconv.compat.spconv" + module[len("spconv"):]]
        for name in names:
            assert hasattr(ours, name), f"{module}.{name}"
    assert set(spconv.pytorch.__all__) <= set(spconv.__all__)
    assert all(hasattr(spconv, name) for name in spconv.__all__)


@needs_spconv
def test_every_name_spconv_pytorch_exports_exists():
    """The classes and functions the real ``spconv.pytorch`` and ``spconv.pytorch.modules`` define are here too."""
    import spconv.pytorch as real
    import spconv.pytorch.modules as real_modules
    for theirs, ours in ((real, spconv.pytorch), (real_modules, spconv.pytorch.modules)):
        names = {n for n in dir(theirs) if not n.startswith("_") and (inspect.isclass(getattr(theirs, n))
                 or inspect.isfunction(getattr(theirs, n))) and getattr(theirs, n).__module__.startswith("spconv")}
        names -= {"PrintTensorMeta", "PrintCurrentTime"}  # spconv's print/timing debug helpers
        assert names and all(hasattr(ours, n) for n in names), sorted(n for n in names if not hasattr(ours, n))
    assert [(m.name, m.value) for m in spconv.ConvAlgo] == [(m.name, m.value) for m in real.ConvAlgo]


@pytest.mark.parametrize("name", ["SubMConv3d", "SparseConv3d", "SparseInverseConv3d", "SparseConvTranspose3d",
                                  "SparseMaxPool3d", "SparseAvgPool3d"])
def test_algo_is_accepted_and_kept(name):
    args = (2, 3, 3, "key") if name == "SparseInverseConv3d" else (3,) if "Pool" in name else (2, 3, 3)
    module = getattr(spconv, name)(*args, algo=spconv.ConvAlgo.MaskSplitImplicitGemm)
    expected = spconv.ConvAlgo.MaskImplicitGemm if name == "SparseAvgPool3d" else spconv.ConvAlgo.MaskSplitImplicitGemm
    assert module.algo is expected
    with pytest.raises(ValueError, match=f"{name}: algo must be None or a spconv.core.ConvAlgo member .* got 'fast'"):
        getattr(spconv, name)(*args, algo="fast")


@needs_spconv
def test_algo_of_the_real_spconv_enum_is_read_by_name():
    import spconv.core as real_core
    conv = spconv.SubMConv3d(2, 3, 3, algo=real_core.ConvAlgo.Native)
    assert conv.algo is spconv.ConvAlgo.Native and spconv.SubMConv3d(2, 3, 3).algo is spconv.ConvAlgo.Native


def test_constants():
    assert spconv.constants.ALL_WEIGHT_IS_KRSC is True and spconv.constants.SPCONV_FX_TRACE_MODE is False
    assert spconv.pytorch.constants.PYTORCH_VERSION >= [2, 0, 0] and spconv.pytorch.constants.TORCH_HAS_AMP
    assert spconv.pytorch.constants.is_amp_enabled() is False
