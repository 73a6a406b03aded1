"""The integer codes that cross from Python to the kernels: their one
definition. CMake writes the C++ header ``hopkit/codes.h`` from this file when
it configures the build (``python codes.py OUT_DIR``), so the kernels and the
Python side can never disagree."""

from __future__ import annotations

import sys

# (C++ enum, namespace, {python name: (C++ name, code)})
ENUMS = (
    ("Reduce", "hopkit", {"sum": ("SUM", 0), "mean": ("MEAN", 1), "max": ("MAX", 2),
                          "min": ("MIN", 3)}),
    # "edge": the edge features alone (X is None; DGL's copy_e)
    ("Message", "hopkit", {"copy": ("COPY", 0), "mul": ("MUL", 1), "add": ("ADD", 2),
                           "edge": ("EDGE", 3)}),
    ("Score", "hopkit", {"dot": ("DOT", 0), "gat": ("GAT", 1)}),
    # value dtypes of the CUDA entry points
    ("DType", "hopkit::cuda", {"float32": ("F32", 0), "float64": ("F64", 1),
                               "float16": ("F16", 2), "bfloat16": ("BF16", 3)}),
)

_BY_NAME = {name: {k: code for k, (_, code) in members.items()} for name, _, members in ENUMS}
REDUCES = _BY_NAME["Reduce"]
MESSAGES = _BY_NAME["Message"]
SCORES = _BY_NAME["Score"]
DTYPES = _BY_NAME["DType"]


def header() -> str:
    out = ["// Generated from python/hopkit/codes.py by CMake: do not edit.", "#pragma once", ""]
    for name, ns, members in ENUMS:
        body = ", ".join(f"{cxx} = {code}" for cxx, code in members.values())
        parts = ns.split("::")
        out += [" ".join(f"namespace {p} {{" for p in parts), f"enum {name} : int {{ {body} }};",
                "}" * len(parts) + f"  // namespace {ns}", ""]
    return "\n".join(out)


if __name__ == "__main__":
    import pathlib

    path = pathlib.Path(sys.argv[1]) / "hopkit" / "codes.h"
    path.parent.mkdir(parents=True, exist_ok=True)
    text = header()
    if not path.exists() or path.read_text() != text:
        path.write_text(text)
