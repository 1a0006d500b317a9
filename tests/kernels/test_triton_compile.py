"""The Triton kernels compile for a GPU target without a GPU (the interpreter is more lenient than the compiler).

Triton lowers a kernel to TTIR, TTGIR, LLVM IR, PTX and a cubin (with its bundled ``ptxas``) for a
named target, no device needed: this catches what the CPU interpreter lets through (types of
loop-carried values, constexpr branches, dot operand dtypes, shared-memory limits). Run in a
subprocess, because the kernels must be defined with ``TRITON_INTERPRET`` unset. The shipped tiles
(``autograd.BLOCKS``, ``BACKWARD_BLOCKS``, the backward's warps) at D = 128. Slow (about two minutes).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("triton")

SCRIPT = textwrap.dedent(
    """
    import triton, triton.language as tl
    from triton.compiler import ASTSource
    from triton.backends.compiler import GPUTarget
    from qkv.kernels.triton.forward import attention_forward
    from qkv.kernels.triton.backward import attention_backward_kv, attention_backward_q
    from qkv.kernels.triton.autograd import ADDITIVE_CHUNK, BACKWARD_BLOCKS, BLOCKS, _backward_warps

    CONSTEXPR = {"ADDITIVE", "HAS_MASK", "HAS_BAND", "HAS_LEN", "HAS_AROUND", "HAS_GAUSS", "HAS_BIAS", "STORE_DBIAS",
                 "PRECISION", "MM", "ACC", "BM", "BN", "BF", "BDV", "BA"}
    INTS = {"L", "S", "F", "DV", "NQ", "NK", "HEADS", "band_lo", "band_hi"}

    def signature(fn, dt):
        sig = {}
        for a in fn.arg_names:
            if a in CONSTEXPR:
                sig[a] = "constexpr"
            elif a in INTS or a.startswith("stride"):
                sig[a] = "i32"
            elif a in ("window", "inv_two_sigma2"):
                sig[a] = "fp32"
            elif a in ("RANGES", "TILE_RANGES", "LENGTHS"):
                sig[a] = "*i32"
            elif a == "MASK":
                sig[a] = "*u8"
            elif a in ("Q", "K", "V", "O", "DO"):
                sig[a] = "*" + dt
            else:
                sig[a] = "*fp32"
        return sig

    # the shipped tiles (autograd.BLOCKS / BACKWARD_BLOCKS, the backward's warps) at D = Dv = 128
    for dt, mm in (("fp16", tl.float16), ("bf16", tl.bfloat16), ("fp32", tl.float32)):
        for additive in (False, True):
            kind = "additive" if additive else "dot"
            flags = dict(ADDITIVE=additive, HAS_MASK=True, HAS_BAND=True, HAS_LEN=True, HAS_AROUND=True,
                         HAS_GAUSS=True, HAS_BIAS=True, PRECISION="ieee" if dt == "fp32" else "tf32", MM=mm,
                         ACC=tl.float32, BF=128, BDV=128, BA=ADDITIVE_CHUNK)
            for fn in (attention_forward, attention_backward_kv, attention_backward_q):
                bm, bn = (BLOCKS if fn is attention_forward else BACKWARD_BLOCKS)[kind]
                cx = dict(flags, BM=bm, BN=bn, **({"STORE_DBIAS": True} if fn is attention_backward_kv else {}))
                warps = 4 if fn is attention_forward else _backward_warps(128)
                triton.compile(ASTSource(fn, signature(fn, dt), constexprs=cx), target=GPUTarget("cuda", 90, 32),
                               options={"num_warps": warps})
                print("compiled", dt, "additive" if additive else "dot", fn.__name__, flush=True)
    """
)


@pytest.mark.slow
def test_kernels_compile_for_sm90():
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["TRITON_CACHE_DIR"] = os.path.join(os.environ.get("TMPDIR", "/tmp"), "qkv-triton-compile-test")
    done = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-4000:]
    assert done.stdout.count("compiled") == 18, done.stdout
