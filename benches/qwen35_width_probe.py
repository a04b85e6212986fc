#!/usr/bin/env python3
"""Write Qwen3.5 GGUFs at the real models' widths but only 2 layers (one Gated
DeltaNet, one full attention: full_attention_interval 2), with sparse (never
written) F16 data and no tokenizer, for llama.cpp to report its compute buffer
at real scale without gigabytes of weights (the buffer does not depend on
depth: a 4-layer probe gives the same figure). Reproduces the probe rows in
tests/gguf_memory.rs:

    .venv/bin/python benches/qwen35_width_probe.py OUT_DIR
    .venv/bin/python benches/gguf_llama_memory.py OUT_DIR/probe-35b-a3b.gguf 4096 16384 [--fa off]
    (likewise probe-27b.gguf, probe-deltanet.gguf, probe-deltanet-wide.gguf)

F16 because llama.cpp's CPU backend repacks (and so reads) quantised
matrices; F16 ones stay mapped and untouched.
"""
import os
import sys

import numpy as np
from gguf import GGMLQuantizationType as Q
from gguf import GGUFWriter


def probe(path, arch, embd, heads, kv, head_dim, state, groups, v_heads,
          ff=0, experts=0, used=0, ff_exp=0, ff_shexp=0, vocab=256):
    inner = v_heads * state
    w = GGUFWriter(path, arch)
    w.add_name("probe")
    w.add_file_type(1)
    w.add_context_length(262144)
    w.add_embedding_length(embd)
    w.add_block_count(2)
    w.add_head_count(heads)
    w.add_head_count_kv(kv)
    w.add_key_length(head_dim)
    w.add_value_length(head_dim)
    w.add_layer_norm_rms_eps(1e-6)
    w.add_rope_dimension_count(head_dim // 4)
    # Interleaved M-RoPE sections over rope_dim / 2 pairs (11:11:10 at 256).
    w.add_rope_dimension_sections([11, 11, 10, 0] if head_dim == 256 else [4, 2, 2, 0])
    w.add_rope_freq_base(1e7)
    for k, v in [("ssm.conv_kernel", 4), ("ssm.state_size", state), ("ssm.group_count", groups),
                 ("ssm.time_step_rank", v_heads), ("ssm.inner_size", inner),
                 ("full_attention_interval", 2)]:
        w.add_uint32(f"{arch}.{k}", v)
    if experts:
        w.add_expert_count(experts)
        w.add_expert_used_count(used)
        w.add_uint32(f"{arch}.expert_feed_forward_length", ff_exp)
        w.add_uint32(f"{arch}.expert_shared_feed_forward_length", ff_shexp)
    else:
        w.add_feed_forward_length(ff)
    w.add_string("tokenizer.ggml.model", "none")
    w.add_vocab_size(vocab)
    data = [0]

    def t(name, shape, ty=Q.F16):
        n = int(np.prod(shape))
        nbytes = n * (4 if ty == Q.F32 else 2)
        dtype = np.float32 if ty == Q.F32 else np.float16
        w.add_tensor_info(name, list(reversed(shape)), dtype, nbytes, raw_dtype=ty)
        data[0] += (nbytes + 31) // 32 * 32

    t("token_embd.weight", [embd, vocab])
    for il in range(2):
        b = f"blk.{il}"
        t(f"{b}.attn_norm.weight", [embd], Q.F32)
        t(f"{b}.post_attention_norm.weight", [embd], Q.F32)
        if il == 1:
            t(f"{b}.attn_q.weight", [embd, 2 * heads * head_dim])
            t(f"{b}.attn_k.weight", [embd, kv * head_dim])
            t(f"{b}.attn_v.weight", [embd, kv * head_dim])
            t(f"{b}.attn_output.weight", [heads * head_dim, embd])
            t(f"{b}.attn_q_norm.weight", [head_dim], Q.F32)
            t(f"{b}.attn_k_norm.weight", [head_dim], Q.F32)
        else:
            ch = inner + 2 * groups * state
            t(f"{b}.attn_qkv.weight", [embd, ch])
            t(f"{b}.attn_gate.weight", [embd, inner])
            t(f"{b}.ssm_conv1d.weight", [4, ch], Q.F32)
            t(f"{b}.ssm_dt.bias", [v_heads], Q.F32)
            t(f"{b}.ssm_a", [v_heads], Q.F32)
            t(f"{b}.ssm_alpha.weight", [embd, v_heads])
            t(f"{b}.ssm_beta.weight", [embd, v_heads])
            t(f"{b}.ssm_norm.weight", [state], Q.F32)
            t(f"{b}.ssm_out.weight", [inner, embd])
        if experts:
            t(f"{b}.ffn_gate_inp.weight", [embd, experts], Q.F32)
            t(f"{b}.ffn_gate_exps.weight", [embd, ff_exp, experts])
            t(f"{b}.ffn_up_exps.weight", [embd, ff_exp, experts])
            t(f"{b}.ffn_down_exps.weight", [ff_exp, embd, experts])
            t(f"{b}.ffn_gate_inp_shexp.weight", [embd], Q.F32)
            t(f"{b}.ffn_gate_shexp.weight", [embd, ff_shexp])
            t(f"{b}.ffn_up_shexp.weight", [embd, ff_shexp])
            t(f"{b}.ffn_down_shexp.weight", [ff_shexp, embd])
        else:
            t(f"{b}.ffn_gate.weight", [embd, ff])
            t(f"{b}.ffn_up.weight", [embd, ff])
            t(f"{b}.ffn_down.weight", [ff, embd])
    t("output_norm.weight", [embd], Q.F32)
    t("output.weight", [embd, vocab])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    w.close()
    header = os.path.getsize(path)
    with open(path, "r+b") as f:
        f.truncate((header + 31) // 32 * 32 + data[0])
    print(f"wrote {path} ({data[0] / 2**30:.2f} GiB of sparse data)")


def main() -> int:
    out = sys.argv[1] if len(sys.argv) > 1 else "."
    os.makedirs(out, exist_ok=True)
    # Qwen3.5-35B-A3B's widths.
    probe(os.path.join(out, "probe-35b-a3b.gguf"), "qwen35moe", 2048, 16, 2, 256, 128, 16, 32,
          experts=256, used=8, ff_exp=512, ff_shexp=512)
    # Qwen3.5-27B's widths.
    probe(os.path.join(out, "probe-27b.gguf"), "qwen35", 5120, 24, 4, 256, 128, 16, 48, ff=17408)
    # The 35B-A3B's DeltaNet widths behind a one-head attention and a
    # 64-wide FFN: the recurrent layer's buffer is the peak; then the same
    # with twice the value heads.
    probe(os.path.join(out, "probe-deltanet.gguf"), "qwen35", 2048, 1, 1, 64, 128, 16, 32, ff=64)
    probe(os.path.join(out, "probe-deltanet-wide.gguf"), "qwen35", 2048, 1, 1, 64, 128, 16, 64, ff=64)
    return 0


if __name__ == "__main__":
    sys.exit(main())
