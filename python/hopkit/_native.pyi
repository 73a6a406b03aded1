"""Type stubs of hopkit._native, the CPU module (csrc/bindings/*.cpp).

Every kernel function has the backend contract of ``hopkit/reference.py``:
validated, C-contiguous NumPy arrays in, results written into the out-parameters
(the last arguments), the GIL released while the kernel runs. The parameter
names are the ``py::arg`` names of the bindings and the parameter names of
``hopkit.reference`` and ``hopkit._numba_kernels`` (tests/test_bindings.py).
"""

from numpy import ndarray

__version__: str
openmp: bool
cuda_option: str
cuda_built: bool

# ---------------------------------------------------------------- build and threads
def active_isa() -> str:
    """The ISA variant the kernels dispatch to: baseline, avx2 or avx512."""

def compiled_isas() -> str:
    """The ISA variants compiled in, comma-separated, e.g. 'baseline,avx2,avx512'."""

def get_num_threads() -> int:
    """hopkit's thread count."""

def set_num_threads(n: int) -> None:
    """Set hopkit's thread count (n >= 1)."""

def threads_in_parallel_region() -> int:
    """The threads a kernel's parallel region gets now."""

# ---------------------------------------------------------------- CSR construction
def coo_to_csr(
    n_rows: int, n_cols: int, rows: ndarray, cols: ndarray, values: ndarray | None
) -> tuple[int, bool, ndarray, ndarray, None, ndarray | None, ndarray]:
    """COO -> row-sorted CSR: (bad_pos, bad_is_row, indptr, indices, None, values, uniq)."""

def csr_sum_duplicates(
    indptr: ndarray, cols: ndarray, values: ndarray | None, uniq: ndarray
) -> tuple[ndarray, ndarray, ndarray | None]:
    """Sum runs of equal columns of a row-sorted CSR: (indptr, cols, values)."""

def csr_transpose(
    indptr: ndarray, indices: ndarray, n_cols: int
) -> tuple[ndarray, ndarray, ndarray]:
    """Transpose: (indptr, indices, perm) with perm[t] the edge of A behind edge t of A.T."""

# ---------------------------------------------------------------- g-SpMM
def spmm_forward(
    indptr: ndarray,
    indices: ndarray,
    n_rows: int,
    n_cols: int,
    X: ndarray | None,
    F: int,
    E: ndarray | None,
    e_width: int,
    eperm: ndarray | None,
    message: int,
    reduce: int,
    Y: ndarray,
    arg: ndarray | None,
) -> None:
    """g-SpMM forward: Y[i] = reduce_e msg(X[indices[e]], E[e]); arg the max/min winners."""

def spmm_edge_grad(
    indptr: ndarray,
    indices: ndarray,
    n_rows: int,
    n_cols: int,
    X: ndarray | None,
    F: int,
    E: ndarray | None,
    e_width: int,
    eperm: ndarray | None,
    message: int,
    reduce: int,
    dY: ndarray,
    arg: ndarray | None,
    dE: ndarray,
) -> None:
    """Gradient of g-SpMM wrt the edge features, into dE."""

def spmm_arg_grad_x(
    indptr: ndarray,
    indices: ndarray,
    n_rows: int,
    n_cols: int,
    X: ndarray | None,
    F: int,
    E: ndarray | None,
    e_width: int,
    eperm: ndarray | None,
    message: int,
    reduce: int,
    dY: ndarray,
    arg: ndarray,
    dX: ndarray,
) -> None:
    """Gradient of max/min g-SpMM wrt X through the kept arg, into dX."""

# ---------------------------------------------------------------- sampling
def sample_negatives(
    indptr: ndarray,
    indices: ndarray,
    n_items: int,
    users: ndarray,
    n_neg: int,
    seed: int,
    out: ndarray,
) -> None:
    """Uniform negatives per (user, j) rejecting the user's positives, into out."""

# ---------------------------------------------------------------- propagation
def propagate(
    indptr: ndarray,
    indices: ndarray,
    n_rows: int,
    n_cols: int,
    X: ndarray,
    F: int,
    E: ndarray | None,
    eperm: ndarray | None,
    alpha: ndarray,
    out: ndarray,
    work: ndarray | None,
) -> None:
    """Fused multi-hop propagation out = sum_l alpha[l] A^l X (work needed for >= 2 layers)."""

# ---------------------------------------------------------------- attention
def attention_forward(
    indptr: ndarray,
    indices: ndarray,
    n_rows: int,
    n_cols: int,
    Q: ndarray,
    K: ndarray,
    V: ndarray,
    heads: int,
    dk: int,
    dv: int,
    score: int,
    scale: float,
    slope: float,
    out: ndarray,
    lse: ndarray,
) -> None:
    """Fused attention aggregation forward: out and the per-row log-sum-exp lse."""

def attention_backward(
    indptr: ndarray,
    indices: ndarray,
    t_indptr: ndarray,
    t_indices: ndarray,
    n_rows: int,
    n_cols: int,
    Q: ndarray,
    K: ndarray,
    V: ndarray,
    heads: int,
    dk: int,
    dv: int,
    score: int,
    scale: float,
    slope: float,
    out: ndarray,
    dout: ndarray,
    lse: ndarray,
    dQ: ndarray,
    dK: ndarray,
    dV: ndarray,
) -> None:
    """Fused attention aggregation backward, into dQ, dK, dV."""

# ---------------------------------------------------------------- top-k
def topk_prepare(items: ndarray) -> ndarray:
    """Pack items [N, d] into the top-k kernel's panel layout [ceil(N/NR), d, NR]."""

def topk(
    queries: ndarray,
    prepared: ndarray,
    n_items: int,
    k: int,
    ex_indptr: ndarray | None,
    ex_indices: ndarray | None,
    ex_rows: ndarray | None,
    cand_indptr: ndarray | None,
    cand_indices: ndarray | None,
    scores: ndarray,
    idx: ndarray,
) -> None:
    """Top-k inner products per query with exclusion / candidates, into scores / idx [B, k]."""

def topk_select(
    S: ndarray,
    k: int,
    ex_indptr: ndarray | None,
    ex_indices: ndarray | None,
    ex_rows: ndarray | None,
    scores: ndarray,
    idx: ndarray,
) -> None:
    """Top-k of given scores S [B, N] with exclusion, into scores / idx [B, k]."""

# ---------------------------------------------------------------- BPR
def bpr_scores(
    U: ndarray,
    V: ndarray,
    F: int,
    users: ndarray,
    pos: ndarray,
    neg: ndarray,
    shared: bool,
    x: ndarray,
) -> None:
    """x[b] = U[users[b]] . (V[neg[b]] - V[pos[b]])."""

def bpr_backward(
    U: ndarray,
    V: ndarray,
    F: int,
    users: ndarray,
    pos: ndarray,
    neg: ndarray,
    shared: bool,
    c: ndarray,
    dU: ndarray,
    dV: ndarray,
) -> None:
    """Gradients of sum_b c[b] x[b] wrt U and V, added into zeroed dU / dV."""

# ---------------------------------------------------------------- torch's dispatcher
def register_torch_kernels(libtorch_cpu: str, py_kernel: object) -> bool:
    """Register hopkit::spmm's C++ CPU kernel through torch's stable C library API
    (looked up in the already loaded libtorch_cpu at this path; torch >= 2.13);
    py_kernel(backend, *spmm_forward args) serves the other CPU backends. False when
    that API is missing (hopkit.torch_ops.spmm.cpp_kernel)."""

def unregister_torch_kernels() -> None:
    """Remove what register_torch_kernels registered."""
