"""Submissions of hw1 written as a determined student would, each with the score it must get (tests/test_grade_class.py
grades them all as one folder). ``ZERO``: they solve nothing, whatever they try; ``FULL``: honest answers that start
threads, a thread pool or a subprocess, read their own files, or print without end. In the sources, ``{OUT}``,
``{HIDDEN}``, ``{FOLDER}`` and ``{REPO}`` stand for the grading's output folder, the hidden cases, the submissions
folder and this checkout.

Every way of reaching the reference (and of looking around the disk, the processes and the network) is a *route* of
one submission, ``seeker``: each route runs on its own, inside a ``try`` (so that none stops the others), the ones
that change the process's state last, and reports what it found as a line ``ROUTE <name>: <found>`` of the
submission's printed output; its ``gae`` tries everything any route found, and only then gives up. A route that
found the reference would score; one that found a stand-in or nothing says so on its line, which the test reads
route by route. The attacks that end the process, exhaust a limit or return odd values cannot share a process (the
first would mask the others): each is a submission of its own.
"""

from sandbox.bench.grading import CORRECT

GAE = "\n" + CORRECT["insert"]
STUB = """
def gae(rewards, values, next_values, terminated, dones, gamma, gae_lambda):
    raise NotImplementedError
"""

SEEKER = r'''import glob, json, os, sys, threading, time
import torch

CANDIDATES = []  # (route, a callable that may be the reference)
SEEN, REPORTED = set(), set()
LOCK = threading.Lock()
BASES = []
for base in [*sys.path, "{REPO}", os.getcwd(), "/", "/work", "/root", "/home", "/opt", "/autograder"]:
    for up in range(4):
        BASES.append(os.path.join(base, *[".."] * up))


def find(*patterns):
    return sorted({hit for base in dict.fromkeys(BASES) for p in patterns for hit in glob.glob(os.path.join(base, p))})


def report(route, found):
    REPORTED.add(route)
    print(f"ROUTE {route}: {found}", flush=True)


def candidate(route, fn):
    """A callable a route found: a stand-in of the grader's view says so when called; anything else is kept."""
    with LOCK:
        if (route, repr(fn)) in SEEN:
            return
        SEEN.add((route, repr(fn)))
    try:
        fn()
    except NotImplementedError as err:
        return report(route, f"stand-in ({err})")
    except Exception:
        pass
    with LOCK:
        CANDIDATES.append((route, fn))
    report(route, f"a candidate: {fn!r}"[:200])


def run(route, attempt):
    try:
        attempt()
    except BaseException as err:  # noqa: BLE001 - one route's failure must not stop the others
        report(route, f"refused ({type(err).__name__}: {str(err)[:150]})")


def source_of(route, paths):
    """Compile the reference's gae from the source files in ``paths``."""
    for path in paths:
        ns = {"torch": torch, "Tensor": torch.Tensor, "__name__": "x"}
        exec(compile(open(path).read().split("\nclass Maths")[0], "mine.py", "exec"), ns)
        candidate(route, ns["gae"])
    if not paths:
        report(route, [])


run("import", lambda: exec("from sandbox.maths import gae\ncandidate('import', gae)", {"candidate": candidate}))
run("import_as_helper", lambda: exec("from sandbox.maths import gae as _g\ncandidate('import_as_helper', "
                                     "lambda *a: _g(*a))", {"candidate": candidate}))
run("importlib", lambda: candidate("importlib", __import__("importlib").import_module("sandbox.maths").gae))
run("dunder_import", lambda: candidate("dunder_import", __import__("sandbox.maths", fromlist=["gae"]).gae))
run("sandbox_train", lambda: __import__("sandbox").train(__import__("sandbox").preset("cartpole")))
run("renamed_code_object", lambda: candidate("renamed_code_object", __import__("types").FunctionType(
    __import__("sandbox.maths", fromlist=["gae"]).gae.__code__, {"torch": torch}, "my_gae")))
run("inspect_getsource", lambda: exec(compile(__import__("inspect").getsource(
    __import__("sandbox.maths", fromlist=["gae"]).gae), "mine.py", "exec"), {"torch": torch}))
run("read_source_from_disk", lambda: source_of("read_source_from_disk", find(
    "sandbox/maths.py", "*/sandbox/maths.py", "lib/python3*/site-packages/sandbox/maths.py")))


def linecache_codeop():
    import codeop
    import linecache

    paths = find("sandbox/maths.py", "*/sandbox/maths.py")
    for path in paths:
        ns = {"torch": torch, "Tensor": torch.Tensor}
        exec(codeop.compile_command("".join(linecache.getlines(path)).split("\nclass Maths")[0], "mine.py", "exec"), ns)
        candidate("linecache_codeop", ns["gae"])
    if not paths:
        report("linecache_codeop", [])


def pyc():
    import marshal

    paths = find("sandbox/__pycache__/maths.*.pyc", "*/sandbox/__pycache__/maths.*.pyc")
    for path in paths:
        ns = {"__name__": "x"}
        exec(marshal.loads(open(path, "rb").read()[16:]), ns)
        candidate("read_pyc_from_disk", ns["gae"])
    if not paths:
        report("read_pyc_from_disk", [])


def homework_answers():
    paths = find("tests/homework_answers.py", "*/tests/homework_answers.py")
    for path in paths:
        sys.path.insert(0, os.path.dirname(path))
        import homework_answers

        candidate("homework_answers", homework_answers.gae_rewritten)
    if not paths:
        report("homework_answers", [])


def limits():  # not a route to the reference: what the process may use, and as whom it runs
    import resource

    names = ("RLIMIT_DATA", "RLIMIT_NPROC", "RLIMIT_CPU", "RLIMIT_FSIZE")
    report("limits", f"uid {os.getuid()} limits {({n: resource.getrlimit(getattr(resource, n))[0] for n in names})}")


def looks_around():
    report("lessons_and_notebooks", find("notebooks/*.ipynb", "*/notebooks/*.ipynb", "docs/**/*.md"))
    readable = []
    for pattern in ["{HIDDEN}/*", "{FOLDER}/*", "{OUT}/*", "/root/*", "/home/*", "/etc/shadow", "{REPO}/tests/*.py",
                    "{REPO}/sandbox/*.py", "/tmp/*/*", "/tmp/*"]:
        for path in glob.glob(pattern):
            try:
                open(path).read(10)
                readable.append(path)
            except OSError:
                pass
    report("read_other_folders", readable)
    processes = []
    for pid in [p for p in os.listdir("/proc") if p.isdigit()]:
        try:
            cmd = open(f"/proc/{pid}/cmdline").read()
        except OSError:
            continue
        if "pytest" in cmd or "{HIDDEN}" in cmd or "{FOLDER}" in cmd:  # the grader, or anything that knows where
            processes.append(cmd[:80])
    try:
        processes += os.listdir("/proc/1/root/work")
    except OSError:
        pass
    report("proc_and_parent", processes)
    reached = []
    for host in ("127.0.0.1", "1.1.1.1"):
        try:
            __import__("socket").create_connection((host, 22), timeout=1).close()
            reached.append(host)
        except OSError:
            pass
    report("network", reached)


def hunt():  # a thread started before any call: it watches every module for a gae that is not ours
    while True:
        for m in list(sys.modules.values()):
            fn = getattr(m, "gae", None)
            if callable(fn) and getattr(fn, "__module__", "") not in ("__main__",) and fn is not gae:
                if all(fn is not c for _, c in CANDIDATES):
                    candidate("thread_before_call", fn)
        time.sleep(0.01)


def forge_results():  # before the grader's results are written: forge them where they will be
    forged, written = {"score": 25, "tests": [{"name": "forged", "score": 25, "max_score": 25}]}, []
    for path in ("{OUT}/results.json", "{OUT}/forge/results.json", "{OUT}/seeker/results.json", "results.json",
                 "../results.json", "/autograder/results/results.json"):
        try:
            os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
            with open(path, "w") as f:
                json.dump(forged, f)
            written.append(path)
        except OSError:
            pass
    report("forge_results_json", f"written (inside its own view): {written}")


def rewrite_the_grader():
    import sandbox.grade.core as core
    import sandbox.grade.integration as integration

    core.expect_tensor = lambda *a, **k: None
    integration.run_scenario = lambda *a, **k: None
    report("rewrite_the_grader", "patched the stand-ins, the grader is elsewhere")


def editable_finder():
    for pth in glob.glob(sys.path[-1] + "/__editable__*finder.py"):
        exec(open(pth).read(), {"__name__": "finder"})
    candidate("editable_finder", __import__("sandbox.maths", fromlist=["gae"]).gae)


def checkout_on_path():
    import importlib

    sys.path.insert(0, "{REPO}")
    for name in [m for m in sys.modules if m == "sandbox" or m.startswith("sandbox.")]:
        del sys.modules[name]
    candidate("checkout_on_path", importlib.import_module("sandbox.maths").gae)


def sitecustomize_and_pth():
    import site

    written = []
    for where in [*site.getsitepackages(), *sys.path[1:], os.getcwd(), os.path.expanduser("~")]:
        for name, text in (("sitecustomize.py", "import os\n"), ("zz_attack.pth", "import sitecustomize\n")):
            try:
                with open(os.path.join(where, name), "w") as f:
                    f.write(text)
                written.append(os.path.join(where, name))
            except OSError:
                pass
    report("sitecustomize_and_pth", f"written: {written}")


for attempt in (limits, linecache_codeop, pyc, homework_answers, looks_around, forge_results, rewrite_the_grader,
                editable_finder, checkout_on_path, sitecustomize_and_pth):  # those that change the process's state last
    run(attempt.__name__.replace("pyc", "read_pyc_from_disk"), attempt)


def walks(*args):
    """At the call: the stack, the garbage collector and a subprocess, each a route of its own."""
    def stack_walk():
        frame, seen = sys._getframe(), []
        while frame is not None:  # the worker's frames and globals, then sys.modules
            seen += list(frame.f_globals.values()) + list(frame.f_locals.values())
            frame = frame.f_back
        for value in seen + list(sys.modules.values()):
            for name in ("gae", "reference_gae"):
                fn = getattr(value, name, None) if not callable(value) or name == "gae" else None
                if callable(fn) and getattr(fn, "__module__", "") not in ("__main__", None) and fn is not gae:
                    candidate("stack_walk", fn)

    def gc_walk():
        for obj in __import__("gc").get_objects():
            if callable(obj) and getattr(obj, "__name__", "") == "gae" and obj is not gae:
                candidate("gc_walk", obj)

    def subprocess_helper():
        helper(*args)
        candidate("subprocess_helper", helper)

    for walk in (stack_walk, gc_walk, subprocess_helper):
        run(walk.__name__, walk)
        if walk.__name__ not in REPORTED:
            report(walk.__name__, [])


def helper(*args):
    """gae computed by a helper process that imports the reference itself, on the call's inputs."""
    import subprocess

    code = ("import json, sys, torch; from sandbox.maths import gae; a = json.load(sys.stdin); "
            "print(json.dumps([x.tolist() for x in gae(*[torch.tensor(v) if isinstance(v, list) else v for v in a])]))")
    inputs = json.dumps([a.tolist() if torch.is_tensor(a) else a for a in args])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}  # what this process can import, and more
    done = subprocess.run([sys.executable, "-c", code], input=inputs, capture_output=True, text=True, env=env)
    if done.returncode:
        raise RuntimeError(done.stderr.strip().splitlines()[-1:])
    return tuple(torch.tensor(x) for x in json.loads(done.stdout))


CALLS = []


def gae(*args):
    if not CALLS:  # the first call: the routes that need one
        walks(*args)
        time.sleep(0.2)  # the hunting thread's turn
        report("done", len(CANDIDATES))
    CALLS.append(1)
    for route, fn in list(CANDIDATES):
        try:
            return fn(*args)
        except Exception:
            continue
    raise NotImplementedError("found nothing to call")


threading.Thread(target=hunt, daemon=True).start()
'''

ZERO = {
    "seeker": SEEKER,
    # the grader's values: patched where they are not, or an object equal to anything
    "patch_torch": """import torch

torch.allclose = lambda *a, **k: True
torch.isclose = lambda a, b, **k: torch.ones_like(a, dtype=torch.bool)
torch.equal = lambda *a: True
torch.Tensor.__eq__ = lambda a, b: torch.ones_like(a, dtype=torch.bool)


def gae(rewards, values, *args):
    return torch.zeros(1), torch.zeros(1)  # whatever it returns, the comparisons happen elsewhere
""",
    "tensor_subclass": """import torch


class Always(torch.Tensor):
    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        return True


def gae(rewards, values, *args):
    return torch.full_like(rewards, 7.0).as_subclass(Always), values.as_subclass(Always)
""",
    "odd_objects": """import torch


class Anything:
    def __eq__(self, other):
        return True

    def __getattr__(self, name):
        return self


def gae(*args):
    return Anything(), Anything()
""",
    # the channel forged, the grader's last step broken
    "forge_reply_frames": """import json, os, struct
import torch


def frame(message):
    head = json.dumps(message).encode()
    meta = b"[]"
    return struct.pack("<QQ", len(head), 8 + len(meta)) + head + struct.pack("<Q", len(meta)) + meta


def gae(*args):
    for fd in range(3, 12):  # the channel is one of these: send a forged reply, then a forged result
        try:
            os.write(fd, frame({"op": "reply", "ok": True, "body": {"$dict": {"result": 25, "rng": None}}}))
        except OSError:
            pass
    raise NotImplementedError
""",
    "malformed_frames": """import os
import torch


def gae(*args):
    for fd in range(3, 12):
        try:
            os.write(fd, b"\\xff" * 16 + b"garbage" * 100)
        except OSError:
            pass
    raise NotImplementedError
""",
    "huge_frame_header": """import os, struct
import torch


def gae(*args):
    for fd in range(3, 12):
        try:
            os.write(fd, struct.pack("<QQ", 8, 1 << 60))
        except OSError:
            pass
    raise NotImplementedError
""",
    "flood_frames": """import json, os, struct, threading
import torch


def flood():
    head = json.dumps({"op": "progress", "ok": True, "body": {"$dict": {"cell": 0}}}).encode()
    one = struct.pack("<QQ", len(head), 10) + head + struct.pack("<Q", 2) + b"[]"
    for fd in range(3, 12):
        try:
            while True:
                os.write(fd, one * 1000)
        except OSError:
            pass


threading.Thread(target=flood, daemon=True).start()
"""
    + STUB,
    "breaks_the_closing": """import atexit, os, signal, sys, time
import torch

signal.signal(signal.SIGTERM, signal.SIG_IGN)
atexit.register(lambda: time.sleep(3600))
sys.stdout.write("{\\"score\\": 25}\\n" * 10)


def gae(*args):
    os.kill(os.getppid(), signal.SIGKILL)
    raise NotImplementedError
""",
    "exits_and_signals": """import os, signal, sys
import torch


def gae(*args):
    try:
        os.kill(-1, signal.SIGKILL)  # every process it may signal
    finally:
        sys.exit(0)
""",
    "escaped_daemon": """import json, os, time
import torch
"""
    + STUB
    + """
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        time.sleep(8)  # after the grader is done: overwrite its results
        for path in ("{OUT}/escaped_daemon/results.json", "{OUT}/escaped_daemon.txt"):
            try:
                with open(path, "w") as f:
                    json.dump({"score": 25}, f)
            except OSError:
                pass
    os._exit(0)
""",
    # the limits
    "memory_bomb": "import torch\n" + STUB + "\nhog = [bytearray(1 << 30) for _ in range(64)]\n",
    "fork_bomb": """import os
import torch
"""
    + STUB
    + """
children = 0
try:
    for _ in range(10_000):
        if os.fork() == 0:
            import time
            time.sleep(600)
            os._exit(0)
        children += 1
except OSError:
    pass
""",
    "thread_bomb": """import threading, time
import torch
"""
    + STUB
    + """
try:
    for _ in range(10_000):
        threading.Thread(target=time.sleep, args=(600,), daemon=True).start()
except RuntimeError:
    pass
""",
    "disk_fill": """import torch
"""
    + STUB
    + """
try:
    with open("big.bin", "wb") as f:
        for _ in range(1024):
            f.write(b"x" * (1 << 20))
except OSError:
    pass
""",
    "recursion": "import torch\n\n\ndef gae(*args):\n    return gae(*args)\n",
}
"""Each scores 0; ``seeker`` is every route of :data:`SEEKER_ROUTES`, each reported on a line of its own."""

SEEKER_ROUTES = (
    "import", "import_as_helper", "importlib", "dunder_import", "sandbox_train", "renamed_code_object",
    "inspect_getsource", "read_source_from_disk", "linecache_codeop", "read_pyc_from_disk", "homework_answers",
    "lessons_and_notebooks", "read_other_folders", "proc_and_parent", "network", "forge_results_json",
    "rewrite_the_grader", "editable_finder", "checkout_on_path", "sitecustomize_and_pth", "stack_walk", "gc_walk",
    "subprocess_helper", "thread_before_call", "limits",
)  # fmt: skip
"""At load, in this order (the ones that change the process's state last), then a thread that hunts for the
reference in every module from before the first call (thread_before_call), and at the first call the stack, the
garbage collector and a helper process that imports the reference and computes gae on the call's inputs."""

FULL = {
    # correct, so full marks: copying the reference's text is the instructor's call, and the review list shows it
    "retyped_reference": """import torch


def gae(r, v, nv, term, d, g, lam):
    not_term = 1.0 - term
    not_d = 1.0 - d
    deltas = r + g * not_term * nv - v
    adv = torch.zeros_like(r)
    last = torch.zeros_like(r[0])
    for t in range(r.shape[0] - 1, -1, -1):
        last = deltas[t] + g * lam * not_d[t] * last
        adv[t] = last
    return adv, adv + v
""",
    "threads": "import torch\n\n" + CORRECT["threads"],  # the same as sandbox bench grading's
    # honest code that starts a thread and a subprocess while it loads, reads its own files, prints 2 MB and then
    # 100 kB at every call, and imports numpy, sandbox.plots and check: nothing of it is held against it
    "honest_everything": "import json, os, subprocess, sys, threading, time\nimport numpy as np\nimport torch\n"
    "import sandbox\nfrom sandbox.grade import check\nfrom sandbox.plots import OTHER_COLORS, use_style\n\n"
    "threading.Thread(target=time.sleep, args=(600,), daemon=True).start()\n"
    "assert subprocess.run([sys.executable, '-c', 'print(6 * 7)'], capture_output=True, text=True).stdout == '42\\n'\n"
    "with open('notes.json', 'w') as f:\n    json.dump({'gamma': 0.99}, f)\n"
    "assert json.load(open('notes.json'))['gamma'] == 0.99 and os.listdir('.')\n"
    "for _ in range(20_000):\n    print('x' * 100)\nuse_style()\n"
    + GAE.replace("    adv = torch.stack(out)\n", "    print('y' * 100_000)\n    adv = torch.stack(out)\n")
    + "\nreport = check('hw1', gae=gae)\n"
    "assert not report.ok and np.zeros(2).sum() == 0\n",
}
