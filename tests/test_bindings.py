"""The binding signatures are one contract (issue 12).

* every function of ``hopkit._native`` / ``hopkit._cuda`` has a stub in
  ``_native.pyi`` / ``_cuda.pyi`` with the same parameter names, in order;
* the native names (pybind11's ``__doc__`` signature, which has them once
  ``py::arg`` is used) are the parameter names of the NumPy reference and of
  the Numba backend, so that the three CPU backends share one contract;
* ``py::arg("x").none(true)`` in C++ is ``x: ... | None`` in the stub.

``_cuda`` is checked against its C++ sources (``py::arg`` names parsed with a
regex) when it is not built here; the parser is checked against the built
``_native`` so that the source-level check can be trusted.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "python" / "hopkit"
BIND = ROOT / "csrc" / "bindings"
NATIVE_SOURCES = sorted(BIND.glob("*.cpp"))
NATIVE_SOURCES = [p for p in NATIVE_SOURCES if p.name != "cuda_module.cpp"]
CUDA_SOURCES = [BIND / "cuda_module.cpp", *sorted((BIND / "cuda").glob("*.cpp"))]

# _native functions that are not part of the backend contract (build facts, threads).
MODULE_ONLY = {"active_isa", "compiled_isas", "get_num_threads", "set_num_threads",
               "threads_in_parallel_region", "register_torch_kernels", "unregister_torch_kernels"}


# ---------------------------------------------------------------- parsers
def _stub(name):
    """{function: [(param, annotation source)]} and the annotated variables of a .pyi."""
    tree = ast.parse((PKG / f"{name}.pyi").read_text())
    funcs, attrs = {}, set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            a = node.args
            assert not (a.vararg or a.kwarg or a.kwonlyargs or a.posonlyargs or a.defaults), (
                f"{name}.pyi: {node.name} should list plain positional-or-keyword parameters")
            funcs[node.name] = [(p.arg, ast.unparse(p.annotation) if p.annotation else "")
                                for p in a.args]
            assert ast.get_docstring(node), f"{name}.pyi: {node.name} has no docstring"
        elif isinstance(node, ast.AnnAssign):
            attrs.add(node.target.id)
    return funcs, attrs


def _doc_params(fn):
    """Parameter names from the first line of a pybind11 function's __doc__."""
    first = fn.__doc__.lstrip().splitlines()[0]
    node = ast.parse(f"def {first}: ...").body[0]
    return [p.arg for p in node.args.args]


def _lambda_arity(chunk):
    """Parameter count of the lambda bound by a ``m.def(`` chunk; None for a function pointer."""
    m = re.match(r'\s*"\w+"\s*,\s*\[\]\s*([({])', chunk)
    if m is None:
        return None
    if m.group(1) == "{":
        return 0
    depth, i, commas, empty = 1, m.end(), 0, True
    while depth:
        c = chunk[i]
        if c in "(<":
            depth += 1
        elif c in ")>":
            depth -= 1
        elif c == "," and depth == 1:
            commas += 1
        if depth and not c.isspace():
            empty = False
        i += 1
    return 0 if empty else commas + 1


def _cpp_defs(paths):
    """{function: [(py::arg name, none(true))]} parsed from binding sources."""
    out = {}
    for p in paths:
        text = re.sub(r"//[^\n]*", "", p.read_text())
        for chunk in text.split("m.def(")[1:]:
            name = re.match(r'\s*"(\w+)"', chunk).group(1)
            args = [(a, bool(none)) for a, none in
                    re.findall(r'py::arg\("(\w+)"\)(\.none\(true\))?', chunk)]
            arity = _lambda_arity(chunk)
            assert arity is None or arity == len(args), (
                f"{p.name}: {name} takes {arity} arguments but names {len(args)} with py::arg")
            assert name not in out, f"{name} is bound twice"
            out[name] = args
    return out


def _native():
    try:
        return importlib.import_module("hopkit._native")
    except ImportError:
        pytest.skip("hopkit._native is not built")


def _functions(mod):
    return {n: getattr(mod, n) for n in dir(mod)
            if not n.startswith("_") and callable(getattr(mod, n))}


def _allows_none(annotation):
    return "None" in re.split(r"[\s|\[\],]+", annotation)


# ---------------------------------------------------------------- _native
def test_native_stub_matches_sources():
    funcs, _ = _stub("_native")
    cpp = _cpp_defs(NATIVE_SOURCES)
    assert sorted(funcs) == sorted(cpp)
    for name, args in cpp.items():
        assert [p for p, _ in funcs[name]] == [a for a, _ in args], name


def test_native_stub_matches_module():
    mod = _native()
    funcs, attrs = _stub("_native")
    got = _functions(mod)
    assert sorted(got) == sorted(funcs)
    for name, fn in got.items():
        assert _doc_params(fn) == [p for p, _ in funcs[name]], name
        assert not any(re.fullmatch(r"arg\d+", p) for p in _doc_params(fn)), (
            f"{name}: an argument has no py::arg name")
    values = {n for n in dir(mod) if not callable(getattr(mod, n))
              and (not n.startswith("_") or n == "__version__")}
    assert values == attrs


def test_source_parser_matches_native_doc():
    """The regex over the C++ sources reads what pybind11 reports (so the _cuda check,
    which has only the sources, can be trusted)."""
    mod = _native()
    cpp = _cpp_defs(NATIVE_SOURCES)
    for name, fn in _functions(mod).items():
        assert [a for a, _ in cpp[name]] == _doc_params(fn), name


@pytest.mark.parametrize("module", ["_native", "_cuda"])
def test_stub_none_matches_py_arg_none(module):
    funcs, _ = _stub(module)
    cpp = _cpp_defs(NATIVE_SOURCES if module == "_native"
                    else CUDA_SOURCES)
    for name, args in cpp.items():
        for (a, none), (p, ann) in zip(args, funcs[name], strict=True):
            assert ann, f"{module}.pyi: {name}({p}) has no annotation"
            assert _allows_none(ann) == none, (
                f"{module}: {name}({a}) has none(true)={none} but the stub says {ann!r}")


def test_native_accepts_keywords():
    """py::arg names make keyword calls work (same result as positional)."""
    import numpy as np

    mod = _native()
    indptr = np.array([0, 2, 3], dtype=np.int64)
    indices = np.array([0, 1, 1], dtype=np.int32)
    t = mod.csr_transpose(indptr=indptr, indices=indices, n_cols=2)
    p = mod.csr_transpose(indptr, indices, 2)
    for a, b in zip(t, p, strict=True):
        np.testing.assert_array_equal(a, b)
    X = np.arange(4, dtype=np.float64).reshape(2, 2)
    Y = np.empty((2, 2))
    mod.spmm_forward(indptr, indices, 2, 2, X=X, F=2, E=None, e_width=0, eperm=None,
                     message=0, reduce=0, Y=Y, arg=None)
    np.testing.assert_array_equal(Y, [[2.0, 4.0], [2.0, 3.0]])


# ---------------------------------------------------------------- one CPU contract
def _contract():
    funcs, _ = _stub("_native")
    return {n: [p for p, _ in ps] for n, ps in funcs.items() if n not in MODULE_ONLY}


@pytest.mark.parametrize("backend", ["reference", "numba"])
def test_backends_share_parameter_names(backend):
    if backend == "numba":
        pytest.importorskip("numba")
        mod = importlib.import_module("hopkit._numba_kernels")
    else:
        mod = importlib.import_module("hopkit.reference")
    for name, params in _contract().items():
        fn = getattr(mod, name, None)
        assert fn is not None, f"hopkit.{mod.__name__}: {name} is missing"
        sig = inspect.signature(fn)
        assert list(sig.parameters) == params, (
            f"{mod.__name__}.{name}{sig} differs from _native.{name}({', '.join(params)})")


def test_reference_docstring_names_the_contract():
    """The names in reference.py's docstring are the contract's names."""
    import hopkit.reference as ref

    doc = " ".join(ref.__doc__.split())
    contract = _contract()
    seen = 0
    for name, params in re.findall(r"``(\w+)\(([^`]*?)\)", doc):
        if name in contract and "..." not in params:
            assert [p.strip() for p in params.split(",")] == contract[name], name
            seen += 1
    assert seen >= 4


# ---------------------------------------------------------------- _cuda
def test_cuda_stub_matches_sources():
    funcs, attrs = _stub("_cuda")
    cpp = _cpp_defs(CUDA_SOURCES)
    assert sorted(funcs) == sorted(cpp)
    for name, args in cpp.items():
        assert [p for p, _ in funcs[name]] == [a for a, _ in args], name
    text = "".join(p.read_text() for p in CUDA_SOURCES)
    assert set(re.findall(r'm\.attr\("(\w+)"\)', text)) == attrs


def test_cuda_stub_matches_module():
    try:
        mod = importlib.import_module("hopkit._cuda")
    except ImportError:
        pytest.skip("hopkit._cuda is not built (checked against the sources above)")
    funcs, _ = _stub("_cuda")
    got = _functions(mod)
    assert sorted(got) == sorted(funcs)
    for name, fn in got.items():
        assert _doc_params(fn) == [p for p, _ in funcs[name]], name


def test_stubs_are_packaged():
    """The stubs and the PEP 561 marker sit in the package that the wheel ships."""
    for f in ("_native.pyi", "_cuda.pyi", "py.typed"):
        assert (PKG / f).is_file(), f
    text = (ROOT / "pyproject.toml").read_text()
    assert re.search(r'wheel\.packages\s*=\s*\[\s*"python/hopkit"\s*\]', text)
