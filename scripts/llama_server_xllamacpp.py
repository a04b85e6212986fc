#!/usr/bin/env python3
"""A `llama-server` from PyPI: llama.cpp's own HTTP server (the `xllamacpp`
wheel embeds it) behind llama-server's command-line flags.

For machines without a llama.cpp build (and for onboard's tests): point
`engines.llama_server` in onboard.yaml at this script. It takes the flags
onboard's profiles use, serves /health, /tokenize, /completion and
/v1/chat/completions, and stops on SIGTERM or SIGINT.

A flag it does not know is refused (exit 2), as llama-server refuses one: a
profile that llama.cpp would not start must not start here either. Flags
that place weights on GPUs are taken and set where the wheel exposes them;
on the CPU build from PyPI they change nothing.

`LLAMA_SERVER_XLLAMACPP_DRY_RUN=1` checks the flags, prints the settings
and exits without loading the model.
"""
import argparse
import os
import signal
import sys
import threading

try:
    import xllamacpp
except ImportError:
    sys.exit("llama-server-xllamacpp: the Python package `xllamacpp` is missing; run scripts/setup")


def gpu_layers(value):
    """`-ngl N|auto|all` (auto and all as llama-server reads them)."""
    if value in ("auto", "all") or value.lstrip("-").isdigit():
        return value
    raise argparse.ArgumentTypeError(f"expected a number, `auto` or `all`, got `{value}`")


def on_off(value):
    if value in ("on", "off"):
        return value == "on"
    raise argparse.ArgumentTypeError(f"expected `on` or `off`, got `{value}`")


def cache_type(value):
    name = "GGML_TYPE_" + value.upper()
    if name not in xllamacpp.ggml_type.__members__:
        raise argparse.ArgumentTypeError(f"unknown cache type `{value}`")
    return xllamacpp.ggml_type[name]


def spec_types(value):
    out = []
    for t in value.split(","):
        name = "COMMON_SPECULATIVE_TYPE_" + t.strip().upper().replace("-", "_")
        if name not in xllamacpp.common_speculative_type.__members__:
            raise argparse.ArgumentTypeError(f"unknown speculative type `{t}`")
        out.append(xllamacpp.common_speculative_type[name])
    return out


def parser():
    ap = argparse.ArgumentParser(prog="llama-server-xllamacpp", add_help=True, allow_abbrev=False)
    ap.add_argument("-m", "--model", required=True)
    ap.add_argument("-c", "--ctx-size", type=int, default=0)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8080)
    ap.add_argument("-np", "--parallel", type=int, default=1)
    ap.add_argument("-t", "--threads", type=int, default=0)
    ap.add_argument("-b", "--batch-size", type=int)
    ap.add_argument("-ub", "--ubatch-size", type=int)
    ap.add_argument("--alias", default=None)
    ap.add_argument("--jinja", action="store_true")
    ap.add_argument("--no-context-shift", action="store_true")
    ap.add_argument("--reasoning-format", default=None)
    ap.add_argument("-lv", "--verbosity", type=int, default=None)
    # Placement (GPUs, fitting) and memory.
    ap.add_argument("-ngl", "--n-gpu-layers", "--gpu-layers", type=gpu_layers, default=None)
    ap.add_argument("-ts", "--tensor-split", default=None)
    ap.add_argument("-ot", "--override-tensor", action="append", default=[])
    ap.add_argument("--n-cpu-moe", type=int, default=None)
    ap.add_argument("-fit", "--fit", type=on_off, default=None)
    ap.add_argument("-fitt", "--fit-target", default=None)
    ap.add_argument("-fitc", "--fit-ctx", type=int, default=None)
    ap.add_argument("-ctk", "--cache-type-k", type=cache_type, default=None)
    ap.add_argument("-ctv", "--cache-type-v", type=cache_type, default=None)
    ap.add_argument("-cram", "--cache-ram", type=int, default=None)
    ap.add_argument("-mm", "--mmproj", default=None)
    # Speculative decoding.
    ap.add_argument("--spec-type", type=spec_types, default=None)
    ap.add_argument("--spec-draft-n-max", type=int, default=None)
    # Samplers.
    ap.add_argument("--temp", type=float)
    ap.add_argument("--top-p", type=float)
    ap.add_argument("--top-k", type=int)
    ap.add_argument("--min-p", type=float)
    ap.add_argument("--presence-penalty", type=float)
    ap.add_argument("--frequency-penalty", type=float)
    ap.add_argument("--repeat-penalty", type=float)
    ap.add_argument("--typical", type=float)
    ap.add_argument("--mirostat", type=int)
    ap.add_argument("-s", "--seed", type=int)
    return ap


def params(args):
    p = xllamacpp.CommonParams()
    p.model.path = args.model
    p.n_ctx = args.ctx_size
    p.n_parallel = args.parallel
    p.port = args.port
    p.hostnames = [args.host]
    if args.threads:
        p.cpuparams.n_threads = args.threads
        p.cpuparams_batch.n_threads = args.threads
    if args.batch_size:
        p.n_batch = args.batch_size
    if args.ubatch_size:
        p.n_ubatch = args.ubatch_size
    if args.n_gpu_layers is not None and args.n_gpu_layers.lstrip("-").isdigit():
        p.n_gpu_layers = int(args.n_gpu_layers)
    if args.tensor_split:
        parts = [float(x) for x in args.tensor_split.replace("/", ",").split(",") if x]
        split = list(p.tensor_split)
        split[: len(parts)] = parts
        p.tensor_split = split
    if args.fit is not None:
        p.fit_params = args.fit
    if args.fit_target:
        mib = [int(x) for x in args.fit_target.split(",") if x]
        targets = list(p.fit_params_target)
        for i in range(len(targets)):
            targets[i] = mib[min(i, len(mib) - 1)] << 20
        p.fit_params_target = targets
    if args.fit_ctx is not None:
        p.fit_params_min_ctx = args.fit_ctx
    if args.cache_type_k is not None:
        p.cache_type_k = args.cache_type_k
    if args.cache_type_v is not None:
        p.cache_type_v = args.cache_type_v
    if args.cache_ram is not None:
        p.cache_ram_mib = args.cache_ram
    if args.mmproj:
        p.mmproj.path = args.mmproj
    if args.spec_type:
        p.speculative.types = args.spec_type
    if args.spec_draft_n_max is not None:
        p.speculative.draft.n_max = args.spec_draft_n_max
    if args.alias:
        p.model_alias = args.alias
    p.use_jinja = args.jinja
    if args.no_context_shift:
        p.ctx_shift = False
    if args.verbosity is not None:
        p.verbosity = args.verbosity
    s = p.sampling
    for flag, attr in (
        ("temp", "temp"),
        ("top_p", "top_p"),
        ("top_k", "top_k"),
        ("min_p", "min_p"),
        ("presence_penalty", "penalty_present"),
        ("frequency_penalty", "penalty_freq"),
        ("repeat_penalty", "penalty_repeat"),
        ("typical", "typ_p"),
        ("mirostat", "mirostat"),
        ("seed", "seed"),
    ):
        value = getattr(args, flag)
        if value is not None:
            setattr(s, attr, value)
    return p


def main() -> int:
    args = parser().parse_args()
    p = params(args)
    if os.environ.get("LLAMA_SERVER_XLLAMACPP_DRY_RUN") == "1":
        print(f"llama-server-xllamacpp: flags accepted: model {p.model.path}, ctx {p.n_ctx}, parallel {p.n_parallel}")
        return 0

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    server = xllamacpp.Server(p)
    print(f"llama-server-xllamacpp: listening on {server.listening_address}", file=sys.stderr, flush=True)
    stop.wait()
    del server
    return 0


if __name__ == "__main__":
    sys.exit(main())
