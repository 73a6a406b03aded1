"""Negative sampling on the device (csrc/cuda/sampling.cu): the CPU
backends' counter-based draws, so the items are identical to theirs."""

from __future__ import annotations

import torch

from ._common import cached, ids64, mod, ptr, stream


def sample_negatives(indptr, indices, n_items, users, n_neg, seed, out):
    device = out.device
    ip = ids64(indptr, device)
    ix = indices if indices.device == device else cached(
        indices, ("on", str(device)), lambda: indices.detach().to(device).contiguous())
    mod().sample_negatives(ptr(ip), ptr(ix), ix.dtype == torch.int64, n_items, ptr(users),
                           users.dtype == torch.int64, int(users.shape[0]), n_neg,
                           int(seed) % 2**64, ptr(out), out.dtype == torch.int64,
                           stream(device))
