"""Runs the llama_args harness (tests/support/llama_args.cpp) inside Python,
where the xllamacpp wheel's library finds the interpreter's symbols.

usage: python llama_args.py LIBRARY MODE ARG...
"""
import ctypes
import sys

import xllamacpp  # noqa: F401  (loads llama.cpp's library into the process)


def main() -> int:
    lib = ctypes.CDLL(sys.argv[1])
    args = ["llama_args"] + sys.argv[2:]
    argv = (ctypes.c_char_p * (len(args) + 1))(*[a.encode() for a in args], None)
    lib.onboard_llama_args.restype = ctypes.c_int
    return lib.onboard_llama_args(len(args), argv)


if __name__ == "__main__":
    sys.stdout.flush()
    sys.exit(main())
