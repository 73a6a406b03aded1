"""Public kernels: validate once, allocate, dispatch to a backend.

One module per op (``spmm.py``, ...), matching ``csrc/cpu/<op>.cpp``. This
package is the only place that knows about torch vs NumPy, validation,
allocation and backend choice: NumPy in gives NumPy out; torch in gives torch
out on the same device, differentiable through ``hopkit.autograd.<op>``.
"""

from .sampling import bpr_triples, sample_negatives
from .spmm import EDGE, MESSAGES, REDUCES, sddmm, spmm

__all__ = ["EDGE", "MESSAGES", "REDUCES", "bpr_triples", "sample_negatives", "sddmm", "spmm"]

from .attention import attention_aggregate  # noqa: E402
from .propagate import propagate  # noqa: E402

__all__ += ["attention_aggregate", "propagate"]
