"""torch.autograd Functions over the NumPy-level kernels of ``hopkit.ops``,
one module per op. CPU tensors cross as zero-copy NumPy views; outputs come
back with ``torch.from_numpy``. Only first derivatives are implemented (the
backward passes are not themselves differentiable)."""
