"""``spconv.core``: :class:`ConvAlgo`, spconv's choice of convolution kernel (``spconv.core.ConvAlgo``, also
``spconv.pytorch.ConvAlgo``).

irregconv has one algorithm (gather -> GEMM -> scatter over the rulebook), so every module accepts ``algo=`` for
compatibility, keeps it as ``self.algo`` and computes the same way whatever it says.
"""
import enum

__all__ = ["ConvAlgo", "as_conv_algo"]


class ConvAlgo(enum.Enum):
    """spconv's kernel choice, with spconv's members and values; accepted and ignored."""
    Native = 0
    MaskImplicitGemm = 1
    MaskSplitImplicitGemm = 2


def as_conv_algo(algo, owner: str) -> ConvAlgo:
    """``algo`` as a :class:`ConvAlgo` (None -> ``ConvAlgo.Native``, the algorithm of spconv's CPU build; a
    member of another ``ConvAlgo`` enum, such as the real spconv's, by its name)."""
    if algo is None:
        return ConvAlgo.Native
    name = getattr(algo, "name", None)
    if isinstance(algo, enum.Enum) and name in ConvAlgo.__members__:
        return ConvAlgo[name]
    raise ValueError(f"{owner}: algo must be None or a spconv.core.ConvAlgo member ({', '.join(ConvAlgo.__members__)}), "
                     f"got {algo!r}; irregconv runs one algorithm whatever it says")
