"""The CUDA backend: the functions of the backend contract
(``hopkit/reference.py``: same names, arguments and out-parameters as
``hopkit._native``, ``hopkit._numba_kernels`` and ``hopkit.reference``) on
torch CUDA tensors instead of NumPy arrays, one module per op. It is what
``hopkit._backend.resolve`` returns for CUDA tensors; the torch operators
(``hopkit/torch_ops``) call it exactly as they call the CPU backends.

Tensors are passed to ``hopkit._cuda`` as device pointers with the current
stream; kernels launch on it and never synchronise. What a kernel needs
beyond the contract's arrays (int32 column indices, the row-segment plan,
a transpose) is derived on the device and cached per input tensor, keyed by
the tensor's identity and version (``_common.cached``), so a cache can never
answer for data other than what was passed. Differences from the CPU
backends are listed in docs/compile.md ("CUDA").
"""

from .attention import attention_backward, attention_forward
from .bpr import bpr_backward, bpr_scores
from .csr import csr_transpose
from .propagate import propagate
from .sampling import sample_negatives
from .spmm import spmm_arg_grad_x, spmm_edge_grad, spmm_forward
from .topk import topk, topk_prepare, topk_select

TAKES_TENSORS = True  # the torch operators pass device tensors, not NumPy views
NAME = "cuda"

__all__ = ["attention_backward", "attention_forward", "bpr_backward", "bpr_scores",
           "csr_transpose", "propagate", "sample_negatives", "spmm_arg_grad_x",
           "spmm_edge_grad", "spmm_forward", "topk", "topk_prepare", "topk_select"]
