"""irregconv's kernels as PyTorch operators (``torch.ops.irregconv.*``), which tracing can see.

``torch.compile`` and ``torch.export`` trace through operators: each has a fake kernel (output shapes from input
shapes, no data), autograd registered with it, declared autocast behaviour, and a CPU kernel that runs the engine,
so a traced call has the same bits as an eager one. Defined here:

* ``irregconv::gather_scatter`` and ``irregconv::gather_scatter_backward`` (:mod:`.gather_scatter`): the engine's
  convolution over a rulebook passed as its tensors.

Eager calls do not go through the operators. :func:`irregconv.engine.gather_scatter` runs the engine directly and
routes a call through ``torch.ops.irregconv.gather_scatter`` only while it is traced (``torch.compiler.is_compiling()``,
or fake and functional tensors, as ``torch.export`` passes). Measured on this machine (2 cores, torch 2.13 CPU; the
minimum of 5 x 20,000 calls of a [4, 4] addition): an ``autograd.Function`` costs 4.5 us a call (7.0 us with inputs
that need a gradient), a ``torch.library.Library`` operator with ``register_autograd`` 10.5 us (18.8 us), a
``torch.library.custom_op`` 12.4 us (23.3 us). The Library operator adds ~12 us per call and direction with
gradients, and its CPU kernel rebuilds the rulebook's derived state (CSR forms, transposes) that the eager path caches
on the :class:`~irregconv.rulebook.Rulebook`: on a Cora GCN training step of ~0.7 ms, that would be several percent.
The operators use the lower-level ``torch.library.Library`` (explicit schema, ~2 us less per call than
``custom_op``, and an ``AutocastCPU`` kernel of their own).
"""
from . import gather_scatter

__all__ = ["gather_scatter"]
