#!/usr/bin/env python3
"""Print llama.cpp's own memory accounting for a GGUF at several contexts.

Reproduces the reference figures asserted in tests/gguf_memory.rs. Needs PyPI
`xllamacpp` (a prebuilt CPU llama.cpp) in ./.venv:

    .venv/bin/pip install xllamacpp
    .venv/bin/python benches/gguf_llama_memory.py MODEL.gguf 2048 4096 [--fa off] [--kv q8_0]

The tiny qwen35 fixture (hybrid DeltaNet/attention) is written by
    [ONBOARD_BENCH_MODEL=qwen35moe|gemma3] ONBOARD_BENCH_OUT=/tmp/qwen35-tiny.gguf cargo run --example gguf_bench -- write_tiny_model

Each context is loaded in a fresh process (llama.cpp keeps global state) with
verbosity 4; the model/KV/compute buffer lines of its log are printed.
"""
import argparse
import re
import subprocess
import sys

CHILD = r"""
import sys, xllamacpp as x
path, ctx, fa, kv = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
p = x.CommonParams()
p.model.path = path
p.n_ctx = ctx
p.cpuparams.n_threads = 1
p.verbosity = 4
p.flash_attn_type = {"auto": x.llama_flash_attn_type.LLAMA_FLASH_ATTN_TYPE_AUTO,
                     "on": x.llama_flash_attn_type.LLAMA_FLASH_ATTN_TYPE_ENABLED,
                     "off": x.llama_flash_attn_type.LLAMA_FLASH_ATTN_TYPE_DISABLED}[fa]
t = getattr(x.ggml_type, "GGML_TYPE_" + kv.upper())
p.cache_type_k = t
p.cache_type_v = t
s = x.Server(p)
del s
"""

def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("ctx", nargs="+", type=int)
    ap.add_argument("--fa", default="auto", choices=["auto", "on", "off"])
    ap.add_argument("--kv", default="f16")
    a = ap.parse_args()
    pat = re.compile(r"(model buffer size|KV buffer size|RS buffer size|compute buffer size|output buffer size)\s*=\s*([0-9.]+) MiB")
    for ctx in a.ctx:
        # The server sometimes never returns after loading: read its log as
        # it comes and stop it once the compute buffer has been reported.
        child = subprocess.Popen([sys.executable, "-c", CHILD, a.model, str(ctx), a.fa, a.kv],
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        figs = {}
        assert child.stdout is not None
        for line in child.stdout:
            for m in pat.finditer(line):
                # Several buffers of one kind (iSWA caches) are listed each.
                figs.setdefault(m.group(1), []).append(float(m.group(2)))
            if "compute buffer size" in line:
                break
        child.kill()
        child.wait()
        print(f"n_ctx={ctx} fa={a.fa} kv={a.kv} " + " ".join(f"{k.split()[0]}=" + "+".join(f"{x:.2f}" for x in v) + "MiB" for k, v in figs.items()))
    return 0

if __name__ == "__main__":
    sys.exit(main())
