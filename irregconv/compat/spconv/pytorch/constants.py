"""``spconv.pytorch.constants``: the torch version as a list of ints, and whether autocast is on."""
import torch

__all__ = ["PYTORCH_VERSION", "TORCH_HAS_AMP", "is_amp_enabled"]

#: ``[major, minor, patch]`` of the running torch (a local suffix such as ``+cpu`` or ``.dev`` dropped)
PYTORCH_VERSION = [int(part) for part in torch.__version__.split("+")[0].split(".dev")[0].split(".")[:3]]
#: torch has ``torch.autocast`` (1.6 and later)
TORCH_HAS_AMP = PYTORCH_VERSION >= [1, 6, 0]


def is_amp_enabled() -> bool:
    """True inside a ``torch.autocast`` region."""
    return torch.is_autocast_enabled()
