"""irregconv's kernels as PyTorch operators (``torch.ops.irregconv.*``), which tracing can see.

``torch.compile`` and ``torch.export`` trace through operators: each has a fake kernel (output shapes from input
shapes, no data), autograd registered with it, declared autocast behaviour, and a CPU kernel that runs the engine,
so a traced call has the same bits as an eager one. Defined here:

* ``irregconv::gather_scatter`` and ``irregconv::gather_scatter_backward`` (:mod:`.gather_scatter`): the engine's
  convolution over a rulebook passed as its tensors.

Eager calls do not go through the operators. :func:`irregconv.engine.gather_scatter` runs the engine directly and
routes a call through ``torch.ops.irregconv.gather_scatter`` only while it is traced (``torch.compiler.is_compiling()``,
or fake and functional tensors, as ``torch.export`` passes); compiled code calls the operators' CPU kernels without
their Python autograd layer. Measured on this machine (2 cores shared with other work, torch 2.13 CPU, one thread,
the minimum of 7 runs):

* a ``[4, 4]`` addition as an ``autograd.Function``: 4.5 us a call (7.0 us with an input that needs a gradient); as a
  ``torch.library.Library`` operator with ``register_autograd``: 10.5 us (18.8 us); as a ``torch.library.custom_op``:
  12.4 us (23.3 us);
* ``gather_scatter`` on a 20-node, 80-pair graph, 16 -> 16 channels with scale and bias: forward 36 us eager, 56 us
  through the operator; forward and backward 193 us eager, 416 us through the operator (``register_autograd``'s Python
  layer and the second operator call of the backward).

A Cora GCN training step of ~0.7 ms makes ~13 kernel calls, so routing eager calls through the operators would cost
it tens of percent: eager calls keep the direct path. The operators use the lower-level ``torch.library.Library``
(explicit schemas, ~2-4 us less per call than ``custom_op``, and an ``AutocastCPU`` kernel of their own).

The operators take a rulebook as its tensors, so derived state the engine caches on a
:class:`~irregconv.rulebook.Rulebook` (CSR forms, transposes) is rebuilt by the kernels and kept for the most recent
argument sets (:class:`.gather_scatter._RecentRulebooks`), until that state is owned by the sites and graphs
themselves.
"""
from . import gather_scatter

__all__ = ["gather_scatter"]
