"""topk: hopkit vs FAISS IndexFlatIP, torch mm + mask + topk, NumPy argpartition.

Cases (float32, every peer timed in this process, median of repeats):

* ``eval``: all-user full-ranking retrieval at Gowalla size (29,858 users x
  40,981 items, d=64, k=20), excluding each user's training items (the
  Gowalla-shaped interactions split ~80/20 per user); also without exclusion,
  and d=128, k=100. FAISS cannot exclude per query: it searches
  k + (longest exclusion row) and filters (the usual workaround); torch and
  NumPy score a batch of 4096 users, set the training pairs to -inf and select.
* ``serve``: 1, 16 and 256 queries against 1,000,000 items (d=64, k=10),
  latency p50 / p99 per batch; hopkit uses a prepared ``ItemIndex`` (FAISS
  keeps its flat index, torch its item tensor).

``GF/s`` is 2 B N d / time; ``of_sgemm`` divides it by a 2048^3 sgemm measured
in the same run (``_common.sgemm_rate``). For serving, ``GB/s`` is the bytes
of items read per batch (N d 4, read once) over the p50 latency, and
``of_copy_bw`` its fraction of the measured copy bandwidth.
"""

from __future__ import annotations

import numpy as np

import hopkit

from ._common import copy_bandwidth, gowalla_graph, row, sgemm_rate, timeit

GROUP = "topk"
TORCH_BATCH = 4096


def split(R, frac=0.2, seed=0):
    """(train, test) CSRs: each interaction of R goes to test with probability frac."""
    rng = np.random.default_rng(seed)
    rows, cols = R.row_ids(), np.asarray(R.indices)
    te = rng.random(R.nnz) < frac
    mk = lambda m: hopkit.CSR.from_coo(rows[m], cols[m], None, R.shape)
    return mk(~te), mk(te)


def _member(train, users, idx):
    """[B, k] bool: idx[b, r] is a training item of users[b]."""
    keys = train.row_ids() * train.n_cols + np.asarray(train.indices, dtype=np.int64)
    q = users[:, None] * train.n_cols + idx
    pos = np.minimum(np.searchsorted(keys, q), len(keys) - 1)
    return (keys[pos] == q) & (idx >= 0)


def faiss_topk(index, U, k, train=None, users=None):
    """FAISS IndexFlatIP; with exclusion: search k + longest row, drop, keep k."""
    if train is None:
        return index.search(U, k)
    kmax = min(index.ntotal, k + int(train.row_degree().max()))
    D, Ix = index.search(U, kmax)
    drop = _member(train, users, Ix)
    order = np.argsort(drop, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(D, order, 1), np.take_along_axis(Ix, order, 1)


def _batch_pairs(train, b0, b1):
    """(rows - b0, cols) of the training pairs of users [b0, b1)."""
    a, b = train.indptr[b0], train.indptr[b1]
    return (np.repeat(np.arange(b1 - b0), np.diff(train.indptr[b0:b1 + 1])),
            train.indices[a:b].astype(np.int64))


def torch_topk(torch, tU, tV, k, train=None):
    """torch: scores of a batch of users, training pairs to -inf, torch.topk."""
    out_s, out_i = [], []
    for b0 in range(0, tU.shape[0], TORCH_BATCH):
        b1 = min(tU.shape[0], b0 + TORCH_BATCH)
        S = tU[b0:b1] @ tV.T
        if train is not None:
            r, c = _batch_pairs(train, b0, b1)
            S[torch.from_numpy(r), torch.from_numpy(c)] = -float("inf")
        s, i = torch.topk(S, k, dim=1)
        out_s.append(s)
        out_i.append(i)
    return torch.cat(out_s), torch.cat(out_i)


def numpy_topk(U, V, k, train=None):
    """NumPy: scores of a batch, training pairs to -inf, argpartition, sort the k."""
    out_s, out_i = [], []
    for b0 in range(0, U.shape[0], TORCH_BATCH):
        b1 = min(U.shape[0], b0 + TORCH_BATCH)
        S = U[b0:b1] @ V.T
        if train is not None:
            r, c = _batch_pairs(train, b0, b1)
            S[r, c] = -np.inf
        part = np.argpartition(-S, k, axis=1)[:, :k]
        ps = np.take_along_axis(S, part, 1)
        order = np.lexsort((part, -ps), axis=1)
        out_s.append(np.take_along_axis(ps, order, 1))
        out_i.append(np.take_along_axis(part, order, 1))
    return np.concatenate(out_s), np.concatenate(out_i)


def _check(name, s, i, ref_s, ref_i, n=256):
    """A peer's first n rows against hopkit's: scores close, ids equal up to ties."""
    s, i = np.asarray(s)[:n], np.asarray(i)[:n]
    np.testing.assert_allclose(s, ref_s[:n], rtol=1e-4, atol=1e-4, err_msg=name)
    same = (i == ref_i[:n]).mean()
    assert same > 0.98, f"{name}: only {same:.3f} of the ids agree with hopkit"


def _repeats(fn, most, budget):
    """Runs fn once (warm-up) and returns how many timed runs fit in budget seconds
    (at least 1 for the slow peers, at most ``most``)."""
    t = timeit(fn, repeats=1, warmup=0)[0]
    return int(max(1, min(most, budget // max(t, 1e-9))))


def _eval_case(rows, label, U, V, k, train, repeats, torch, faiss):
    B, d = U.shape
    N = V.shape[0]
    flops = 2.0 * B * N * d
    users = np.arange(B, dtype=np.int64)
    hk = lambda: hopkit.topk(U, V, k, exclude=train)
    hs, hi = hk()
    # hopkit against the NumPy reference backend on a few users first
    sub = slice(0, 64)
    ex_sub = None
    if train is not None:
        ip = train.indptr[:65]
        ex_sub = hopkit.CSR(ip, train.indices[:ip[-1]], None, (64, N))
    rs, ri = hopkit.topk(U[sub], V, k, exclude=ex_sub, backend="numpy")
    np.testing.assert_allclose(hs[sub], rs, rtol=1e-4, atol=1e-4)
    assert (hi[sub] == ri).mean() > 0.98
    peers = {"hopkit": hk}
    if faiss is not None:
        index = faiss.IndexFlatIP(d)
        index.add(V)
        f = lambda: faiss_topk(index, U, k, train, users)
        _check("faiss", *f(), hs, hi)
        peers["faiss IndexFlatIP" + (" (search k+max excl, filter)" if train is not None
                                     else "")] = f
    if torch is not None:
        tU, tV = torch.from_numpy(U), torch.from_numpy(V)
        t = lambda: torch_topk(torch, tU, tV, k, train)
        ts, ti = t()
        _check("torch", ts.numpy(), ti.numpy(), hs, hi)
        peers[f"torch mm+mask+topk (batch {TORCH_BATCH})"] = t
    nps, npi = numpy_topk(U[:512], V, k, None if train is None else
                          hopkit.CSR(train.indptr[:513], train.indices[:train.indptr[512]],
                                     None, (512, N)))
    _check("numpy", nps, npi, hs, hi)
    peers[f"numpy matmul+mask+argpartition (batch {TORCH_BATCH})"] = lambda: numpy_topk(
        U, V, k, train)
    rate = sgemm_rate()
    for name, fn in peers.items():
        t = timeit(fn, repeats=_repeats(fn, repeats, budget=20.0), warmup=0)[0]
        rows.append(row(GROUP, label, name, t, **{"GF/s": flops / t / 1e9,
                                                  "of_sgemm": flops / t / rate}))


def _serve_case(rows, N, d, k, batches, repeats, torch, faiss, rng):
    V = rng.standard_normal((N, d)).astype(np.float32)
    index = hopkit.ItemIndex(V)
    fidx = None
    if faiss is not None:
        fidx = faiss.IndexFlatIP(d)
        fidx.add(V)
    tV = torch.from_numpy(V) if torch is not None else None
    bw = copy_bandwidth()
    for B in batches:
        Q = rng.standard_normal((B, d)).astype(np.float32)
        label = f"serve {B} quer{'y' if B == 1 else 'ies'} x {N:,} items d={d} k={k}"
        hs, hi = hopkit.topk(Q, index, k)
        rs, ri = hopkit.topk(Q[:1], V[:20000], k, backend="numpy")
        np.testing.assert_allclose(hopkit.topk(Q[:1], V[:20000], k)[0], rs, rtol=1e-4)
        peers = {"hopkit (ItemIndex)": lambda Q=Q: hopkit.topk(Q, index, k)}
        if fidx is not None:
            _check("faiss", *fidx.search(Q, k), hs, hi)
            peers["faiss IndexFlatIP"] = lambda Q=Q: fidx.search(Q, k)
        if tV is not None:
            tQ = torch.from_numpy(Q)
            ts, ti = torch.topk(tQ @ tV.T, k, dim=1)
            _check("torch", ts.numpy(), ti.numpy(), hs, hi)
            peers["torch mm+topk"] = lambda tQ=tQ: torch.topk(tQ @ tV.T, k, dim=1)
        for name, fn in peers.items():
            n = max(5, _repeats(fn, repeats, budget=10.0))
            _, times = timeit(fn, repeats=n, warmup=1)
            p50, p99 = np.percentile(times, 50), np.percentile(times, 99)
            extra = {"p99_ms": p99 * 1e3}
            if name.startswith("hopkit"):
                extra["GB/s"] = N * d * 4 / p50 / 1e9
                extra["of_copy_bw"] = N * d * 4 / p50 / bw
            rows.append(row(GROUP, label, "hopkit" if name.startswith("hopkit") else name, p50,
                            **extra))


def run(quick=False):
    try:
        import torch
    except ImportError:
        torch = None
    try:
        import faiss
    except ImportError:
        faiss = None
    print(f"[topk] sgemm rate {sgemm_rate() / 1e9:.1f} GF/s, copy bandwidth "
          f"{copy_bandwidth() / 1e9:.1f} GB/s, threads {hopkit.get_num_threads()}, "
          f"faiss {'yes' if faiss else 'missing'}, torch {'yes' if torch else 'missing'}")
    rows = []
    rng = np.random.default_rng(0)
    R, _ = gowalla_graph()
    train, _test = split(R)
    n_users, n_items = R.shape
    B = 2048 if quick else n_users
    train_b = train if not quick else hopkit.CSR(
        train.indptr[:B + 1], train.indices[:train.indptr[B]], None, (B, n_items))
    repeats = 1 if quick else 5
    for d, k, excl in ((64, 20, True), (64, 20, False), (128, 100, True)):
        U = (rng.standard_normal((B, d)) / np.sqrt(d)).astype(np.float32)
        V = rng.standard_normal((n_items, d)).astype(np.float32)
        label = (f"eval {B:,} users x {n_items:,} items d={d} k={k} "
                 + (f"excl {train_b.nnz:,} train pairs" if excl else "no exclusion"))
        _eval_case(rows, label, U, V, k, train_b if excl else None, repeats, torch, faiss)
    _serve_case(rows, 200_000 if quick else 1_000_000, 64, 10, (1, 16, 256),
                5 if quick else 50, torch, faiss, rng)
    return rows
