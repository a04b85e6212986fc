#!/usr/bin/env python3
"""A `llama-server` from PyPI: llama.cpp's own HTTP server (the `xllamacpp`
wheel embeds it) behind llama-server's command-line flags.

For machines without a llama.cpp build (and for onboard's tests): point
`engines.llama_server` in onboard.yaml at this script. It accepts the flags
onboard's profiles use, serves /health, /tokenize, /completion and
/v1/chat/completions, and stops on SIGTERM or SIGINT.
"""
import argparse
import signal
import sys
import threading

try:
    import xllamacpp
except ImportError:
    sys.exit("llama-server-xllamacpp: the Python package `xllamacpp` is missing; run scripts/setup")


def main() -> int:
    ap = argparse.ArgumentParser(prog="llama-server-xllamacpp", add_help=True)
    ap.add_argument("-m", "--model", required=True)
    ap.add_argument("-c", "--ctx-size", type=int, default=0)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8080)
    ap.add_argument("-np", "--parallel", type=int, default=1)
    ap.add_argument("-t", "--threads", type=int, default=0)
    ap.add_argument("-ngl", "--n-gpu-layers", default=None)
    ap.add_argument("--alias", default=None)
    ap.add_argument("--jinja", action="store_true")
    ap.add_argument("--no-context-shift", action="store_true")
    ap.add_argument("--reasoning-format", default=None)
    ap.add_argument("--temp", type=float)
    ap.add_argument("--top-p", type=float)
    ap.add_argument("--top-k", type=int)
    ap.add_argument("--min-p", type=float)
    ap.add_argument("--presence-penalty", type=float)
    ap.add_argument("-lv", "--verbosity", type=int, default=None)
    args, ignored = ap.parse_known_args()
    if ignored:
        print(f"llama-server-xllamacpp: ignoring flags without an effect here: {' '.join(ignored)}", file=sys.stderr)

    p = xllamacpp.CommonParams()
    p.model.path = args.model
    p.n_ctx = args.ctx_size
    p.n_parallel = args.parallel
    p.port = args.port
    p.hostnames = [args.host]
    if args.threads:
        p.cpuparams.n_threads = args.threads
        p.cpuparams_batch.n_threads = args.threads
    if args.n_gpu_layers is not None and args.n_gpu_layers.isdigit():
        p.n_gpu_layers = int(args.n_gpu_layers)
    if args.alias:
        p.model_alias = args.alias
    p.use_jinja = args.jinja
    if args.no_context_shift:
        p.ctx_shift = False
    if args.verbosity is not None:
        p.verbosity = args.verbosity
    s = p.sampling
    for flag, attr in (("temp", "temp"), ("top_p", "top_p"), ("top_k", "top_k"), ("min_p", "min_p"), ("presence_penalty", "penalty_present")):
        value = getattr(args, flag)
        if value is not None and hasattr(s, attr):
            setattr(s, attr, value)

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
