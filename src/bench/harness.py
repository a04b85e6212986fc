"""onboard's test harness: runs one model-written solution against one
HumanEval(+) problem inside onboard's sandbox (a fresh directory seen as
/tmp, an unprivileged user, no network, resource limits set by onboard).

Usage: python3 -c HARNESS < CONFIG (JSON). CONFIG holds: task (the dataset line, parsed), solution (code), guard (bool),
min_time_limit, time_factor, phase_budget, check_time_limit.

The one JSON result line goes to the stdout the harness started with; the
candidate's own output is discarded. The comparison follows EvalPlus:
exact equality, else (when the problem has an atol or the expected value is
a float or a list of floats) same type, same length, and
|out - exp| <= atol + 1e-7 * |exp| element-wise; find_zero is checked by
evaluating the polynomial at the answer.
"""

import ast
import copy
import io
import json
import math
import os
import signal
import sys
import time


class Timeout(BaseException):
    pass


def _alarm(_signum, _frame):
    raise Timeout()


def arm(seconds):
    signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, max(seconds, 0.001))


def disarm():
    signal.setitimer(signal.ITIMER_REAL, 0)


class Sink(io.StringIO):
    """Swallows writes; reading from it fails (no stdin for candidates)."""

    def read(self, *a, **k):
        raise IOError("no input")

    readline = read
    readlines = read


class Quiet:
    def __enter__(self):
        self.saved = (sys.stdout, sys.stderr, sys.stdin)
        sink = Sink()
        sys.stdout = sys.stderr = sys.stdin = sink

    def __exit__(self, *exc):
        sys.stdout, sys.stderr, sys.stdin = self.saved
        return False


# ---------------------------------------------------------------- sanitising


def parses(code):
    try:
        ast.parse(code)
        return True
    except BaseException:
        return False


def longest_parsable_span(text):
    """The contiguous run of lines that parses and has the most non-blank
    lines (what EvalPlus keeps from a reply before pruning)."""
    lines = text.split("\n")
    best, best_len = (0, -1), 0
    n = len(lines)
    if parses(text):
        return text
    for i in range(n):
        if not lines[i].strip():
            continue
        for j in range(n - 1, i - 1, -1):
            weight = sum(1 for l in lines[i : j + 1] if l.strip())
            if weight <= best_len:
                break
            if parses("\n".join(lines[i : j + 1])):
                best, best_len = (i, j), weight
                break
    if best_len <= 0:
        return ""
    return "\n".join(lines[best[0] : best[1] + 1])


def has_return(node):
    return any(isinstance(n, ast.Return) for n in ast.walk(node))


def names_in(node):
    out = set()
    for n in ast.walk(node):
        if isinstance(n, ast.Name):
            out.add(n.id)
        elif isinstance(n, ast.Attribute):
            out.add(n.attr)
        elif isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            out.add(n.name)
        elif isinstance(n, ast.arg):
            out.add(n.arg)
    return out


def sanitize(code, entry_point):
    """Imports, then the top-level classes, functions (with a return) and
    assignments that the entry point reaches, in source order. Top-level
    statements such as prints, tests and `if __name__` blocks are dropped."""
    span = longest_parsable_span(code)
    try:
        tree = ast.parse(span)
    except BaseException:
        return code
    imports, defs, seen = [], [], set()
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            imports.append(node)
            continue
        if isinstance(node, ast.ClassDef):
            name = node.name
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            if not has_return(node):
                continue
            name = node.name
        elif (
            isinstance(node, ast.Assign)
            and len(node.targets) == 1
            and isinstance(node.targets[0], ast.Name)
        ):
            name = node.targets[0].id
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            name = node.target.id
        else:
            continue
        if name in seen:
            continue
        seen.add(name)
        defs.append((name, node))
    deps = {name: names_in(node) for name, node in defs}
    reach, todo = {entry_point}, [entry_point]
    while todo:
        for d in deps.get(todo.pop(), ()):
            if d not in reach:
                reach.add(d)
                todo.append(d)
    kept = imports + [node for name, node in defs if name in reach]
    kept.sort(key=lambda n: (n.lineno, n.col_offset))
    parts = [ast.get_source_segment(span, n, padded=False) for n in kept]
    out = "\n".join(p for p in parts if p).strip()
    return out if out else span


# ------------------------------------------------------------------- guard


def guard():
    """Removes the means of doing damage from the interpreter, as EvalPlus
    does; the operating-system sandbox is what actually contains the code."""
    import builtins
    import shutil
    import subprocess

    builtins.exit = None
    builtins.quit = None
    os.environ["OMP_NUM_THREADS"] = "1"
    for name in (
        "kill", "system", "putenv", "remove", "removedirs", "rmdir", "fchdir",
        "setuid", "fork", "forkpty", "killpg", "rename", "renames", "truncate",
        "replace", "unlink", "fchmod", "fchown", "chmod", "chown", "chroot",
        "lchown", "getcwd", "chdir", "execv", "execve", "execvp", "spawnv",
        "posix_spawn", "posix_spawnp",
    ):
        if hasattr(os, name):
            setattr(os, name, None)
    shutil.rmtree = None
    shutil.move = None
    shutil.chown = None
    subprocess.Popen = None
    for mod in ("ipdb", "joblib", "resource", "psutil", "tkinter"):
        sys.modules[mod] = None


# --------------------------------------------------------------- comparing


def is_floats(x):
    if isinstance(x, float):
        return True
    if isinstance(x, (list, tuple)) and x:
        return all(isinstance(i, float) for i in x)
    return False


def close(a, b, atol):
    """numpy.allclose(a, b, rtol=1e-7, atol) for scalars and nested lists."""
    if isinstance(b, (list, tuple)):
        if not isinstance(a, (list, tuple)) or len(a) != len(b):
            return False
        return all(close(x, y, atol) for x, y in zip(a, b))
    if isinstance(a, (list, tuple)):
        return False
    try:
        a, b = float(a), float(b)
    except (TypeError, ValueError):
        return False
    if math.isnan(a) or math.isnan(b):
        return False
    if math.isinf(a) or math.isinf(b):
        return a == b
    return abs(a - b) <= atol + 1e-7 * abs(b)


def poly(xs, x):
    return sum(c * math.pow(x, i) for i, c in enumerate(xs))


def matches(entry_point, inp, out, exp, atol):
    if entry_point == "find_zero":
        return abs(poly(*inp, out)) <= atol
    exact = out == exp
    if atol == 0 and is_floats(exp):
        atol = 1e-6
    if not exact and atol != 0:
        if type(out) is not type(exp):
            return False
        if isinstance(exp, (list, tuple)) and len(out) != len(exp):
            return False
        return close(out, exp, atol)
    return bool(exact)


# ----------------------------------------------------------------- running


def load(code, entry_point, budget):
    env = {"__name__": "__candidate__"}
    arm(budget)
    try:
        with Quiet():
            exec(compile(code, "solution.py", "exec"), env)
    finally:
        disarm()
    fn = env.get(entry_point)
    if not callable(fn):
        raise NameError("no function `%s`" % entry_point)
    return fn


def ground_truth(task, inputs):
    env = {"__name__": "__truth__"}
    exec(task["prompt"] + task["canonical_solution"], env)
    fn = env[task["entry_point"]]
    outputs, times = [], []
    for inp in inputs:
        args = copy.deepcopy(inp)
        start = time.time()
        outputs.append(fn(*args))
        times.append(time.time() - start)
    return outputs, times


def phase(code, task, inputs, expected, times, cfg):
    """One EvalPlus test phase in fresh globals: 'pass', 'fail' or 'timeout',
    and how many inputs passed."""
    limits = [max(cfg["min_time_limit"], cfg["time_factor"] * t) for t in times]
    budget = min(cfg["phase_budget"], sum(limits)) + 1
    deadline = time.time() + budget
    entry = task["entry_point"]
    atol = task.get("atol", 0) or 0
    passed = 0
    try:
        fn = load(code, entry, budget)
        for i, inp in enumerate(inputs):
            left = deadline - time.time()
            if left <= 0:
                return "timeout", passed
            arm(min(limits[i], left))
            try:
                with Quiet():
                    out = fn(*inp)
            finally:
                disarm()
            if not matches(entry, inp, out, expected[i], atol):
                return "fail", passed
            passed += 1
    except Timeout:
        return ("timeout" if time.time() >= deadline else "fail"), passed
    except BaseException:
        return "fail", passed
    return "pass", passed


def check_phase(code, task, cfg):
    """Original HumanEval: the problem's `check(candidate)` must not raise."""
    limit = cfg["check_time_limit"]
    try:
        fn = load(code, task["entry_point"], limit)
        env = {"__name__": "__test__"}
        exec(task["test"], env)
        arm(limit)
        try:
            with Quiet():
                env["check"](fn)
        finally:
            disarm()
    except Timeout:
        return "timeout", 0
    except BaseException:
        return "fail", 0
    return "pass", 1


def main():
    cfg = json.loads(sys.stdin.buffer.read())
    report = os.fdopen(os.dup(1), "w")
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    task = cfg["task"]
    entry = task["entry_point"]
    result = {"solution": None, "base": None, "plus": None, "error": None}
    try:
        if cfg["mode"] == "plus":
            base_exp, base_t = ground_truth(task, task["base_input"])
            plus_exp, plus_t = ground_truth(task, task["plus_input"])
    except BaseException as e:
        result["error"] = "the canonical solution failed: %r" % (e,)
        report.write(json.dumps(result) + "\n")
        report.flush()
        return
    code = sanitize(cfg["solution"], entry)
    result["solution"] = code
    if cfg.get("guard", True):
        guard()
    if cfg["mode"] == "plus":
        result["base"] = phase(code, task, task["base_input"], base_exp, base_t, cfg)
        result["plus"] = phase(code, task, task["plus_input"], plus_exp, plus_t, cfg)
    else:
        result["base"] = check_phase(code, task, cfg)
    report.write(json.dumps(result) + "\n")
    report.flush()


if __name__ == "__main__":
    main()
