"""The kernels behind spmm (hopkit and cuSPARSE) and all-user top-k, once each
on the Gowalla-shaped graph, for Nsight Compute:

    ncu --clock-control none --profile-from-start off \\
        -k regex:'spmm|csr|SpMM|topk_select' --section SpeedOfLight ... \\
        python benchmarks/gpu_profile.py

Only the region between profiler start and stop is profiled (after a warm-up
call of each, so no upload or first-call work is in it).
"""

import hopkit
import numpy as np
import torch
from hopkit.data.synthetic import synthetic


def main():
    dev = torch.device("cuda")
    R = synthetic(29858, 40981, 1027370, seed=0)
    A = hopkit.bipartite_adjacency(R)
    X = torch.randn(A.n_cols, 64, device=dev)
    At = torch.sparse_csr_tensor(torch.from_numpy(np.array(A.indptr)),
                                 torch.from_numpy(np.array(A.indices, dtype=np.int64)),
                                 torch.from_numpy(np.array(A.values)), size=A.shape).to(dev)
    users = torch.randn(R.shape[0], 64, device=dev)
    items = torch.randn(R.shape[1], 64, device=dev)

    def once():
        hopkit.spmm(A, X)
        torch.sparse.mm(At, X)
        hopkit.topk(users, items, 20, exclude=R)

    once()
    torch.cuda.synchronize()
    torch.cuda.profiler.start()
    once()
    torch.cuda.synchronize()
    torch.cuda.profiler.stop()


if __name__ == "__main__":
    main()
