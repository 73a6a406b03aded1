"""Type stubs of hopkit._cuda, the optional CUDA module (csrc/bindings/cuda_module.cpp,
csrc/bindings/cuda/*.cpp).

Arrays arrive as device pointers (``int``, torch's ``data_ptr()``; 0 = null)
and streams as ``int`` (``cuda_stream``); a CSR as the descriptor
``csr = (indptr, indices, n_rows, n_cols, nnz)`` and a row plan as
``plan = (seg_start, seg_row, seg_slot, n_segs, seg_len, split_row, split_ptr,
n_split, n_slots)``. Called by ``hopkit/cuda_backend`` on validated tensors;
kernels launch on the given stream. The parameter names are the ``py::arg``
names of the bindings (tests/test_bindings.py).
"""

from collections.abc import Sequence

architectures: str
TOPK_MAX_K: int

# ---------------------------------------------------------------- device
def device_count() -> int:
    """Number of CUDA devices (0 when there is no driver or no device)."""

def fill(out: int, value: float, n: int, stream: int) -> None:
    """Fill n float32 values at device pointer out with value."""

# ---------------------------------------------------------------- CSR construction
def sort_temp_bytes(n: int) -> int:
    """Scratch bytes of the radix sort for n keys."""

def coo_to_csr(
    n_rows: int,
    n_cols: int,
    nnz: int,
    index_i64: bool,
    rows: int,
    cols: int,
    value_dtype: int,
    values: int,
    indptr: int,
    cols_out: int,
    values_out: int,
    bad: int,
    scratch: Sequence[int],
    stream: int,
) -> None:
    """COO -> CSR on device pointers (scratch: keys_in, keys_out, ids_in, ids_out, temp, bytes)."""

def csr_transpose(
    n_rows: int,
    n_cols: int,
    nnz: int,
    index_i64: bool,
    indptr: int,
    indices: int,
    t_indptr: int,
    t_indices: int,
    perm: int,
    scratch: Sequence[int],
    stream: int,
) -> None:
    """CSR transpose on device pointers (perm[t] = edge of A behind edge t of A.T)."""

# ---------------------------------------------------------------- g-SpMM
def spmm_unroll() -> int:
    """Edges per lane group and step in the spmm forward kernel."""

def set_spmm_unroll(u: int) -> None:
    """Set the spmm forward unroll (0 = by value type, 1, 2, 4 or 8; a tuning knob)."""

def spmm_forward(
    csr: Sequence[int],
    plan: Sequence[int],
    dtype: int,
    X: int,
    F: int,
    E: int,
    e_width: int,
    eperm: int,
    message: int,
    reduce: int,
    mask: int,
    Y: int,
    arg: int,
    ws_val: int,
    ws_arg: int,
    stream: int,
) -> None:
    """g-SpMM forward on device pointers (0 = null)."""

def spmm_edge_grad(
    csr: Sequence[int],
    dtype: int,
    X: int,
    F: int,
    E: int,
    e_width: int,
    eperm: int,
    message: int,
    reduce: int,
    dY: int,
    arg: int,
    dE: int,
    stream: int,
) -> None:
    """Edge-feature gradient of g-SpMM / SDDMM on device pointers."""

# ---------------------------------------------------------------- propagation
def propagate(
    csr: Sequence[int],
    plan: Sequence[int],
    dtype: int,
    X: int,
    F: int,
    E: int,
    eperm: int,
    alpha: Sequence[float],
    out: int,
    work: int,
    ws_val: int,
    stream: int,
) -> None:
    """Fused multi-hop propagation out = sum_l alpha[l] A^l X on device pointers."""

# ---------------------------------------------------------------- attention
def attention_forward(
    csr: Sequence[int],
    plan: Sequence[int],
    dtype: int,
    Q: int,
    K: int,
    V: int,
    heads: int,
    dk: int,
    dv: int,
    score: int,
    scale: float,
    slope: float,
    out: int,
    lse: int,
    ws: int,
    stream: int,
) -> None:
    """Fused attention forward on device pointers."""

def attention_backward(
    csr: Sequence[int],
    csr_t: Sequence[int],
    dtype: int,
    Q: int,
    K: int,
    V: int,
    heads: int,
    dk: int,
    dv: int,
    score: int,
    scale: float,
    slope: float,
    out: int,
    dout: int,
    lse: int,
    delta: int,
    dQ: int,
    dK: int,
    dV: int,
    stream: int,
) -> None:
    """Fused attention backward on device pointers."""

# ---------------------------------------------------------------- top-k
def topk_select(
    s_dtype: int,
    S: int,
    nq: int,
    N: int,
    k: int,
    q0: int,
    ex_indptr: int,
    ex_indices: int,
    ex_rows: int,
    cand_indptr: int,
    cand_indices: int,
    scores_out: int,
    idx_out: int,
    ws: int,
    stream: int,
) -> int:
    """Per-query top-k selection over score rows; ws = -1 returns the workspace bytes instead."""

# ---------------------------------------------------------------- BPR
def bpr_scores(
    dtype: int,
    U: int,
    V: int,
    F: int,
    ids_i64: bool,
    users: int,
    pos: int,
    neg: int,
    B: int,
    x: int,
    stream: int,
) -> None:
    """BPR margins x[b] = U[users[b]] . (V[neg[b]] - V[pos[b]]) on device pointers."""

def bpr_rows(
    dtype: int,
    Src: int,
    F: int,
    n_rows: int,
    row_ptr: int,
    src: int,
    w: int,
    out: int,
    stream: int,
) -> None:
    """BPR gradient rows out[r] = sum_s w[s] * Src[src[s]] over a row-sorted slot list."""

# ---------------------------------------------------------------- sampling
def sample_negatives(
    indptr: int,
    indices: int,
    indices_i64: bool,
    n_items: int,
    users: int,
    users_i64: bool,
    n_batch: int,
    n_neg: int,
    seed: int,
    out: int,
    out_i64: bool,
    stream: int,
) -> None:
    """Uniform negatives per (user, j) rejecting the user's positives (the CPU draws)."""
