"""The torch operators (torch.ops.hopkit.*): torch.library.opcheck (schema,
fake kernel, autograd registration, AOT dispatch with dynamic shapes) for
every operator on CPU and, where a GPU and the CUDA build are present, on
CUDA; double backward of the linear ones, and the import rules."""

import ast
import pathlib

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import hopkit  # noqa: E402
from hopkit.torch_ops import OPS  # noqa: E402
from hopkit.torch_ops import graph as G  # noqa: E402
from hopkit.torch_ops import spmm as spmm_ops  # noqa: E402
from hopkit.torch_ops.propagate import alpha_tensor  # noqa: E402


def square(seed=0, n=12, E=40):
    rng = np.random.default_rng(seed)
    ei = rng.integers(0, n, (2, E))
    ei[1, :3] = n - 1  # a hub row beside empty ones
    return hopkit.CSR.from_edge_index(ei, num_nodes=n, sum_duplicates=False), torch.from_numpy(ei)


def leaf(*shape, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, dtype=dtype, generator=g).requires_grad_()


def cases():
    A, ei = square()
    g = G.from_csr(A)
    ge = G.from_edge_index(ei, 12)
    X, U = leaf(12, 3), leaf(12, 3, seed=1)
    w, W = leaf(A.nnz, seed=2), leaf(A.nnz, 3, seed=3)
    arg = torch.zeros(12, 3, dtype=torch.int64)
    idx = [torch.from_numpy(np.random.default_rng(s).integers(0, 12, 9)) for s in range(3)]
    yield "csr_transpose", (g.indptr, g.indices, 12, "auto")
    yield "edge_index_csr", (ei, 12, False, "auto")
    yield "edge_index_csr", (ei, 12, True, "auto")
    for graph in (g, ge):
        for msg, red, E in ((1, 0, w), (1, 1, w), (1, 2, w), (1, 3, W), (2, 0, W), (0, 1, None),
                            (2, 2, w)):
            yield "spmm", (*graph.args, X, E, None, msg, red, red >= 2, "auto")
        yield "spmm", (*graph.args, None, W, None, 3, 1, False, "auto")  # edge features alone
        for msg, red, E in ((1, 0, w), (0, 1, None), (2, 3, W)):  # nothing requires grad
            nograd = [None if t is None else t.detach() for t in (X, E)]
            yield "spmm_nograd", (*graph.fwd, None, None, None, 12, *nograd, None, msg, red,
                                  red >= 2, "auto")
        yield "sddmm", (*graph.args, U, X, "auto")
        yield "propagate", (*graph.args, X, w.detach(), None, alpha_tensor([0.25] * 4), "auto")
    # a CSR's own values with its cached transposed values (ET): the backward reads them
    # in the transpose's order, with no edge-id map
    vals = torch.rand(A.nnz, dtype=torch.float64)
    Av = hopkit.CSR(A.indptr, A.indices, vals.numpy(), A.shape)
    gv = G.from_csr(Av)
    ev, evt = G.values_of(Av, torch.float64), G.values_of(Av.T, torch.float64)
    for red in (0, 1):
        yield "spmm", (*gv.args, X, ev, evt, 1, red, False, "auto")
    yield "propagate", (*gv.args, X, ev, evt, alpha_tensor([0.5, 0.3, 0.2]), "auto")
    yield "spmm_arg_grad_x", (*g.fwd, 12, X.detach(), w.detach(), 1, 2, U.detach(), arg, "auto")
    yield "spmm_edge_grad", (*g.fwd, 12, X.detach(), W.detach(), 1, 0, U.detach(), arg, "auto")
    Q, K, V = leaf(12, 8), leaf(12, 8, seed=4), leaf(12, 6, seed=5)
    att = (g.indptr, g.indices, g.t_indptr, g.t_indices, 12)
    yield "attention_aggregate", (*att, Q, K, V, 2, 0, None, 0.2, "auto")
    yield "attention_aggregate", (*att, leaf(12, 2), leaf(12, 2, seed=6), V, 2, 1, None, 0.2,
                                  "auto")
    with torch.no_grad():  # the backward operators have no autograd formula of their own
        out, lse = torch.ops.hopkit.attention_aggregate(*att, Q, K, V, 2, 0, None, 0.2, "auto")
    yield "attention_backward", (*att, Q.detach(), K.detach(), V.detach(), 2, 0, 0.5, 0.2,
                                 out, torch.ones_like(out), lse, "auto")
    yield "bpr_loss", (leaf(12, 4), leaf(12, 4, seed=7), *idx, "auto")
    yield "bpr_loss", (leaf(12, 4), None, *idx, "auto")
    with torch.no_grad():
        loss, x = torch.ops.hopkit.bpr_loss(U.detach(), X.detach(), *idx, "auto")
    yield "bpr_backward", (U.detach(), X.detach(), *idx, x, torch.tensor(1.0, dtype=x.dtype),
                           "auto")
    Qs, Is = torch.randint(-3, 3, (5, 4)).double(), torch.randint(-3, 3, (30, 4)).double()
    ex = hopkit.CSR.from_coo([0, 0, 2, 3], [1, 5, 0, 29], shape=(4, 30))
    exs = (G.from_np(ex.indptr), G.from_np(ex.indices))
    rows = torch.tensor([0, 1, 3, 2, 0])
    yield "topk", (Qs, Is, 7, None, None, None, None, None, "auto")
    yield "topk", (Qs, Is, 40, *exs, rows, None, None, "auto")
    yield "topk", (Qs[:4], Is, 3, *exs, None, *exs, "auto")
    yield "topk_scores", (Qs @ Is.T, 6, *exs, rows, "auto")
    yield "topk_scores", (Qs[:4] @ Is.T, 0, None, None, None, "auto")
    R = hopkit.CSR.from_coo([0, 0, 1, 2], [1, 5, 0, 29], shape=(3, 30))
    for users in (torch.tensor([0, 1, 2, 2]), torch.tensor([2, 0], dtype=torch.int32)):
        yield "sample_negatives", (G.from_np(R.indptr), G.from_np(R.indices), 30, users, 3,
                                   -5, "auto")


CASES = list(cases())


def gpu_present():
    from hopkit import _backend

    return _backend.cuda_module() is not None and torch.cuda.is_available()


DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not gpu_present(), reason="no CUDA device (or hopkit._cuda not built)"))]


def on_device(args, device):
    """The case's tensors on ``device`` (leaves stay leaves)."""
    def move(a):
        if not isinstance(a, torch.Tensor):
            return a
        return a.detach().to(device).requires_grad_(a.requires_grad)

    return tuple(move(a) for a in args)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name,args", CASES, ids=[f"{n}-{i}" for i, (n, _) in enumerate(CASES)])
def test_opcheck(name, args, device):
    if device != "cpu":
        args = on_device(args, device)
    torch.library.opcheck(getattr(torch.ops.hopkit, name).default, args)


def test_every_operator_is_checked():
    assert {n for n, _ in CASES} == set(OPS)
    for name in OPS:
        assert hasattr(torch.ops.hopkit, name)


def test_retrieval_operators_match_the_numpy_path():
    rng = np.random.default_rng(0)
    Q, X = rng.integers(-3, 3, (6, 4)).astype(np.float32), rng.integers(-3, 3, (50, 4)) \
        .astype(np.float32)
    ex = hopkit.CSR.from_coo(rng.integers(0, 6, 20), rng.integers(0, 50, 20), shape=(6, 50))
    for k in (0, 5, 50, 60):
        s, i = hopkit.topk(torch.from_numpy(Q), torch.from_numpy(X), k, exclude=ex)
        s0, i0 = hopkit.topk(Q, X, k, exclude=ex)
        np.testing.assert_array_equal(i.numpy(), i0)
        np.testing.assert_array_equal(s.numpy(), s0)
        s, i = hopkit.topk_scores(torch.from_numpy(Q @ X.T), k, exclude=ex,
                                  exclude_rows=torch.arange(6))
        s0, i0 = hopkit.topk_scores(Q @ X.T, k, exclude=ex)
        np.testing.assert_array_equal(i.numpy(), i0)
    users = rng.integers(0, 6, 40)
    for seed in (0, 2**64 - 1):
        a = hopkit.sample_negatives(ex, torch.from_numpy(users), 3, seed=seed)
        np.testing.assert_array_equal(a.numpy(), hopkit.sample_negatives(ex, users, 3, seed=seed))
    with pytest.raises(ValueError, match=r"topk: exclude_rows must lie in \[0, 6\)"):
        hopkit.topk(torch.from_numpy(Q), torch.from_numpy(X), 3, exclude=ex,
                    exclude_rows=torch.tensor([0, 1, 2, 3, 4, 6]))
    with pytest.raises(ValueError, match=r"sample_negatives: users must lie in \[0, 6\)"):
        hopkit.sample_negatives(ex, torch.tensor([7]), 1)


@pytest.mark.parametrize("reduce", ["sum", "mean"])
def test_spmm_double_backward(reduce):
    A, _ = square(1)
    X, w = leaf(12, 3), leaf(A.nnz, seed=1)
    assert torch.autograd.gradgradcheck(lambda x, e: hopkit.spmm(A, x, reduce, e), (X, w))
    assert torch.autograd.gradgradcheck(lambda x: hopkit.spmm(A, x, reduce), (X,))
    Av = hopkit.CSR(A.indptr, A.indices, np.random.default_rng(1).random(A.nnz), A.shape)
    for M in (Av, Av.T):  # A's values, read in the transpose's order by the backward
        Xm = leaf(M.n_cols, 3)
        assert torch.autograd.gradgradcheck(lambda x, M=M: hopkit.spmm(M, x, reduce), (Xm,))


def test_propagate_and_lgconv_double_backward():
    from hopkit.nn import LGConv

    A, ei = square(2)
    X = leaf(12, 3)
    assert torch.autograd.gradgradcheck(lambda x: hopkit.propagate(A, x, 3), (X,))
    Av = hopkit.CSR(A.indptr, A.indices, np.random.default_rng(2).random(A.nnz), A.shape)
    for M in (Av, Av.T):
        assert torch.autograd.gradgradcheck(lambda x, M=M: hopkit.propagate(M, x, 3), (X,))
    w = torch.rand(ei.shape[1], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradgradcheck(lambda x, e: LGConv()(x, ei, e), (X, w))


def test_sddmm_double_backward():
    A, _ = square(3)
    assert torch.autograd.gradgradcheck(lambda u, v: hopkit.sddmm(A, u, v),
                                        (leaf(12, 3), leaf(12, 3, seed=1)))


def test_torch_stays_optional_in_the_core():
    """`import hopkit` and a NumPy call never import torch (fresh process)."""
    import subprocess
    import sys

    code = ("import sys, numpy as np, hopkit; A = hopkit.CSR([0, 1, 1], [0], shape=(2, 1)); "
            "hopkit.spmm(A, np.ones((1, 2))); assert 'torch' not in sys.modules, 'torch'")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_no_import_cycles():
    """Module-level imports among python/hopkit modules form no cycle."""
    root = pathlib.Path(hopkit.__file__).parent
    mods = {}
    for p in root.rglob("*.py"):
        rel = p.relative_to(root.parent).with_suffix("")
        name = ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)
        pkg = name if rel.name == "__init__" else name.rpartition(".")[0]
        deps = set()
        for node in ast.parse(p.read_text()).body:  # module level only
            if isinstance(node, ast.ImportFrom) and node.level:
                base = pkg.rsplit(".", node.level - 1)[0] if node.level > 1 else pkg
                target = f"{base}.{node.module}" if node.module else base
                deps.add(target)
                deps.update(f"{target}.{a.name}" for a in node.names)
            elif isinstance(node, ast.Import):
                deps.update(a.name for a in node.names if a.name.startswith("hopkit"))
        mods[name] = deps
    graph = {m: {d for d in deps if d in mods and d != m} for m, deps in mods.items()}
    # a package's __init__ importing its own submodules is not a cycle
    graph = {m: {d for d in ds if not d.startswith(m + ".")} for m, ds in graph.items()}
    state = {}

    def visit(m, stack):
        state[m] = 1
        for d in graph[m]:
            if state.get(d) == 1:
                raise AssertionError("import cycle: " + " -> ".join(stack + [m, d]))
            if d not in state:
                visit(d, stack + [m])
        state[m] = 2

    for m in graph:
        if m not in state:
            visit(m, [])


def test_zero_width_features_on_tensors():
    A, _ = square(4)
    Y, arg = hopkit.spmm(A, None, "max", torch.zeros(A.nnz, 0), return_arg=True)
    assert Y.shape == arg.shape == (12, 0) and Y.dtype == torch.float32
    assert arg.dtype == torch.int64
    assert hopkit.spmm(A, torch.zeros(12, 0, dtype=torch.float64)).dtype == torch.float64


@pytest.mark.parametrize("reduce", ["sum", "mean", "max", "min"])
def test_eager_direct_path_equals_the_operator(reduce):
    """Eager calls with nothing for autograd to record run the CPU kernel
    directly (hopkit.torch_ops.graph.call / spmm_csr); the result is the
    operator's, bit for bit, and anything that observes the call (a
    TorchDispatchMode, a tensor that requires grad) still goes through
    torch.ops.hopkit.*."""
    from torch.utils._python_dispatch import TorchDispatchMode

    rng = np.random.default_rng(11)
    ei = rng.integers(0, 30, (2, 200))
    A = hopkit.CSR.from_coo(ei[1], ei[0], rng.random(200).astype(np.float32), shape=(30, 30))
    X = torch.randn(30, 6)
    w = torch.rand(A.nnz)
    for kw in ({}, {"edge_weight": w}, {"edge_weight": w, "message": "add"}):
        direct = hopkit.spmm(A, X, reduce, **kw)
        op = hopkit.spmm(A, X.clone().requires_grad_(), reduce, **kw).detach()
        assert torch.equal(direct, op)
    if reduce in ("max", "min"):
        y, arg = hopkit.spmm(A, X, reduce, return_arg=True)
        y2, arg2 = hopkit.spmm(A, X.clone().requires_grad_(), reduce, return_arg=True)
        assert torch.equal(y, y2.detach()) and torch.equal(arg, arg2)

    class Seen(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.ops = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.ops.append(str(func))
            return func(*args, **(kwargs or {}))

    with Seen() as mode:
        hopkit.spmm(A, X, reduce)
    assert any(o.startswith("hopkit.spmm") for o in mode.ops), mode.ops


# ---------------------------------------------------------------- hopkit::spmm's C++ kernel
needs_cpp = pytest.mark.skipif(not spmm_ops.cpp_kernel(),
                               reason="no native module, or torch < 2.13 (no stable C library API)")


def _has_cpp_kernel(op="spmm"):
    return torch._C._dispatch_has_kernel_for_dispatch_key(f"hopkit::{op}", "CPU")


def _spmm_cases(rng):
    """(label, args) of hopkit::spmm over every message / reduce / edge-feature
    shape, with and without an edge-id map and the transposed side, int32 and
    int64 indices, float32 and float64, strided X and E."""
    n, nnz, F = 25, 160, 5
    ei = rng.integers(0, n, (2, nnz))
    ei[1, :4] = n - 1  # a hub row beside empty ones
    A = hopkit.CSR.from_edge_index(ei, num_nodes=n, sum_duplicates=False)
    graphs = (("csr", G.from_csr(A)), ("edge_index", G.from_edge_index(torch.from_numpy(ei), n)))
    for gname, g in graphs:
        for dt in (torch.float32, torch.float64):
            for it in (torch.int64, torch.int32):
                X = torch.randn(F, n, dtype=dt).t()  # strided
                w = torch.rand(nnz, dtype=dt)
                W = torch.randn(F, nnz, dtype=dt).t()  # strided
                head = (g.indptr, g.indices.to(it), g.eid)
                for side, t in (("T", (g.t_indptr, g.t_indices.to(it), g.t_eid)),
                                ("noT", (None, None, None))):
                    for msg, E in ((0, None), (1, w), (1, W), (2, W), (3, W)):
                        for red in range(4):
                            x = None if msg == 3 else X
                            e = None if E is None else E.dim()
                            label = f"{gname}-{dt}-{it}-{side}-msg{msg}-E{e}-red{red}"
                            yield label, (*head, *t, n, x, E, None, msg, red, red >= 2)


@needs_cpp
@pytest.mark.parametrize("op", ["spmm", "spmm_nograd"])
@pytest.mark.parametrize("backend", ["native", "auto", "numpy"])
def test_cpp_kernel_equals_the_python_kernel(backend, op):
    """torch's dispatcher sends CPU tensors to the C++ kernel; the Python
    kernel it replaces (which the eager direct path still calls) must give
    the same tensors, bit for bit: the C++ kernel runs the native kernel for
    native / auto and hands the other CPU backends to the same Python
    function the Python kernel calls."""
    assert _has_cpp_kernel(op)
    rng = np.random.default_rng(5)
    n = 0
    for label, args in _spmm_cases(rng):
        got = getattr(torch.ops.hopkit, op)(*args, backend)
        want = spmm_ops.spmm._init_fn(*args, backend)
        for a, b in zip(got, want, strict=True):
            assert a.dtype == b.dtype and a.shape == b.shape and a.is_contiguous(), label
            assert torch.equal(a, b), label
        n += 1
    assert n == 2 * 2 * 2 * 2 * 5 * 4


@needs_cpp
def test_cpp_kernel_follows_hopkit_backend_and_reports_errors(monkeypatch):
    """backend="auto" reads HOPKIT_BACKEND on every call as _backend.resolve
    does; a backend the C++ kernel cannot run goes to the Python backend
    (seen here by a spy); a bad name is the Python kernel's ValueError, with
    its message, and the process stays sound."""
    from hopkit import reference

    label, args = next(_spmm_cases(np.random.default_rng(0)))
    calls = []
    real = reference.spmm_forward
    monkeypatch.setattr(reference, "spmm_forward", lambda *a: calls.append(1) or real(*a))
    native = torch.ops.hopkit.spmm(*args, "auto")
    assert not calls
    monkeypatch.setenv("HOPKIT_BACKEND", "numpy")
    via_numpy = torch.ops.hopkit.spmm(*args, "auto")
    assert calls == [1]
    torch.testing.assert_close(via_numpy, native)
    with pytest.raises(ValueError, match=r"^spmm: backend must be one of .* got 'bogus'$"):
        torch.ops.hopkit.spmm(*args, "bogus")
    monkeypatch.delenv("HOPKIT_BACKEND")
    assert torch.equal(torch.ops.hopkit.spmm(*args, "auto")[0], native[0])


BAD_DIRECT = {  # what a direct hopkit::spmm call may get wrong: {argument index: new value}
    "E dtype": lambda a: {8: a[8].double()},
    "indptr int32": lambda a: {0: a[0].int()},
    "X 1-D": lambda a: {7: a[7][:, 0]},
    "float16": lambda a: {7: a[7].half(), 8: a[8].half()},
    "indices float": lambda a: {1: a[1].float()},
    "mul without E": lambda a: {8: None},
    "reduce code": lambda a: {11: 7},
    "indptr empty": lambda a: {0: a[0][:0]},
}


@needs_cpp
@pytest.mark.parametrize("what", list(BAD_DIRECT))
def test_cpp_kernel_refuses_what_the_python_kernel_refuses(what):
    """A direct torch.ops call with arrays of the wrong dtype or rank gets an
    error from the C++ kernel wherever the Python kernel's binding raises one
    (a ValueError: C++ has no TypeError to raise through torch's binding),
    never a read of the wrong type."""
    A, _ = square()
    g = G.from_csr(A)
    X, w = torch.randn(12, 3), torch.rand(A.nnz)
    args = [*g.fwd, None, None, None, 12, X, w, None, 1, 0, False, "native"]
    torch.ops.hopkit.spmm(*args)
    for i, v in BAD_DIRECT[what](args).items():
        args[i] = v
    with pytest.raises(ValueError, match="hopkit::spmm: "):
        torch.ops.hopkit.spmm(*args)
    with pytest.raises((TypeError, ValueError, IndexError, RuntimeError)):
        spmm_ops.spmm._init_fn(*args)


@needs_cpp
def test_cpp_kernel_can_be_removed_and_restored():
    """cpp_kernel(False) hands CPU tensors back to the Python kernel (the
    benchmarks' A/B and the FakeCuda tests use it); True registers it again."""
    _, args = next(_spmm_cases(np.random.default_rng(1)))
    want = torch.ops.hopkit.spmm(*args, "auto")
    try:
        assert spmm_ops.cpp_kernel(False) is False
        assert not _has_cpp_kernel() and not _has_cpp_kernel("spmm_nograd")
        assert torch.equal(torch.ops.hopkit.spmm(*args, "auto")[0], want[0])
        assert torch.equal(torch.ops.hopkit.spmm_nograd(*args, "auto")[0], want[0])
    finally:
        assert spmm_ops.cpp_kernel(True) is True
        assert _has_cpp_kernel() and _has_cpp_kernel("spmm_nograd")
    torch.library.opcheck(torch.ops.hopkit.spmm.default, (*args, "auto"))


def test_spmm_backward_without_the_transposed_side_is_refused():
    """The transposed side is passed as None only where nothing requires grad
    (spmm_graph); a direct call that drops it and then takes a sum/mean
    backward gets a clear error, never a wrong gradient."""
    A, _ = square()
    g = G.from_csr(A)
    X = leaf(12, 3)
    Y, _ = torch.ops.hopkit.spmm(*g.fwd, None, None, None, 12, X, None, None, 0, 0, False, "auto")
    with pytest.raises(RuntimeError, match="needs the transposed side"):
        Y.sum().backward()


@pytest.mark.parametrize("E", [None, "w"])
def test_max_backward_without_the_kept_arg_is_refused(E):
    """A direct call of max/min with want_arg False keeps no arg; its
    backward gets a clear error instead of reading past the empty one (the
    native kernel crashed the process before)."""
    A, _ = square()
    g = G.from_csr(A)
    X = leaf(12, 3)
    w = leaf(A.nnz, seed=2) if E else None
    Y, arg = torch.ops.hopkit.spmm(*g.args, X, w, None, 1 if E else 0, 2, False, "auto")
    assert arg.shape == (0,)
    with pytest.raises(RuntimeError, match="needs the arg kept by the forward"):
        Y.sum().backward()


def test_forward_mode_ad_is_refused_not_dropped():
    """A custom op under forward AD drops the tangents without a word (torch
    2.13: hopkit.spmm under torch.func.jvp returned a zero tangent); hopkit
    refuses dual tensors and jvp with a NotImplementedError instead, for the
    public ops and the nn modules, eager and compiled."""
    import torch.autograd.forward_ad as fwAD
    from hopkit.nn import LGConv

    A, ei = square()
    x, tx = torch.randn(12, 3), torch.randn(12, 3)
    fns = {"spmm": lambda x: hopkit.spmm(A, x), "propagate": lambda x: hopkit.propagate(A, x, 2),
           "sddmm": lambda x: hopkit.sddmm(A, x, x), "LGConv": lambda x: LGConv()(x, ei),
           "compiled spmm": torch.compile(lambda x: hopkit.spmm(A, x), backend="aot_eager")}
    for name, f in fns.items():
        with pytest.raises(NotImplementedError, match="forward-mode AD"):
            with fwAD.dual_level():
                f(fwAD.make_dual(x, tx))
        if not name.startswith("compiled"):  # dynamo refuses jvp of a compiled function itself
            with pytest.raises(NotImplementedError, match="forward-mode AD"):
                torch.func.jvp(f, (x,), (tx,))
    with fwAD.dual_level():  # a forward-AD level alone, with no dual input, is no reason
        assert torch.equal(hopkit.spmm(A, x), fns["spmm"](x))
    # a compiled function traced outside any level is traced again inside one (a guard)
    f = torch.compile(lambda x: hopkit.spmm(A, x), backend="aot_eager")
    f(x)
    with pytest.raises(NotImplementedError, match="forward-mode AD"):
        with fwAD.dual_level():
            f(fwAD.make_dual(x, tx))
