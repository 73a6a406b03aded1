"""Public kernels: validate once, allocate, dispatch to a backend.

One module per op (``spmm.py``, ...), matching ``csrc/cpu/<op>.cpp``. This
package is the only place that knows about torch vs NumPy, validation,
allocation and backend choice: NumPy in gives NumPy out; torch in gives torch
out on the same device, differentiable through the torch operators
(``hopkit.torch_ops``), on CPU and CUDA alike.
"""

from .attention import attention_aggregate
from .bpr import bpr_loss
from .evaluate import evaluate
from .propagate import propagate
from .sampling import bpr_triples, sample_negatives
from .spmm import EDGE, MESSAGES, REDUCES, sddmm, spmm
from .topk import ItemIndex, topk, topk_scores

__all__ = ["EDGE", "MESSAGES", "REDUCES", "ItemIndex", "attention_aggregate", "bpr_loss",
           "bpr_triples", "evaluate", "propagate", "sample_negatives", "sddmm", "spmm", "topk",
           "topk_scores"]
