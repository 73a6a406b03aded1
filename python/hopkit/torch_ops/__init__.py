"""hopkit's kernels as torch operators (``torch.ops.hopkit.*``), registered
with ``torch.library.custom_op``: each has a fake kernel (shapes and dtypes
for torch.compile / export) and an autograd formula (``register_autograd``)
that calls hopkit's operators again, never ``hopkit.ops``. The graph crosses
the boundary as tensors (``graph.Graph``). Importing this package registers
them; ``hopkit.ops`` imports it on the first torch tensor it sees.

Python on the public ``torch.library`` API, so one wheel serves every torch
from 2.4 on (``custom_op``, ``register_fake``, ``register_autograd`` and
``opcheck`` arrived in 2.4). Each kernel serves CPU and CUDA tensors: it
calls the backend that ``_backend.resolve`` picks for the tensors' device
(``hopkit.cuda_backend`` for CUDA; docs/compile.md, "CUDA"). On torch >= 2.13
``hopkit::spmm`` also gets a C++ CPU kernel (``spmm.cpp_kernel``;
docs/compile.md, "The C++ kernel of hopkit::spmm").
"""

from . import attention, bpr, graph, propagate, sampling, spmm, topk  # noqa: F401

OPS = ("csr_transpose", "edge_index_csr", "spmm", "spmm_nograd", "spmm_arg_grad_x",
       "spmm_edge_grad", "sddmm",
       "propagate", "attention_aggregate", "attention_backward", "bpr_loss", "bpr_backward",
       "topk", "topk_scores", "sample_negatives")
