"""Submissions of hw1 written as a determined student would, each with the score it must get (tests/test_grade_class.py
grades them all as one folder). ``ZERO``: they solve nothing, whatever they try; ``FULL``: honest answers that start
threads, a thread pool or a subprocess, read their own files, or print without end. In the sources, ``{OUT}``,
``{HIDDEN}``, ``{FOLDER}`` and ``{REPO}`` stand for the grading's output folder, the hidden cases, the submissions
folder and this checkout; a submission that finds anything raises it, so that its report says what it found.
"""

from sandbox.grade.classroom import CORRECT

GAE = "\n" + CORRECT["insert"]
STUB = """
def gae(rewards, values, next_values, terminated, dones, gamma, gae_lambda):
    raise NotImplementedError
"""
FALLBACK = """
def gae(*args):
    fn = FOUND.get("gae")
    if fn is None:
        raise NotImplementedError("found nothing: " + repr(sorted(FOUND)))
    return fn(*args)
"""
SEARCH = """
import glob, os, sys
FOUND = {}
CANDIDATES = []
for base in [*sys.path, "{REPO}", os.getcwd(), "/", "/work", "/root", "/home", "/opt", "/autograder"]:
    for up in range(4):
        CANDIDATES.append(os.path.join(base, *[".."] * up))
def find(pattern):
    hits = []
    for base in dict.fromkeys(CANDIDATES):
        hits += glob.glob(os.path.join(base, pattern))
    return sorted(set(hits))
"""

ZERO = {
    # the reference, by every route to it
    "import": "from sandbox.maths import gae\n",
    "import_as_helper": "import torch\nfrom sandbox.maths import gae as _g\n\n\ndef gae(*a):\n    return _g(*a)\n",
    "importlib": "import importlib\ngae = importlib.import_module('sandbox.maths').gae\n",
    "dunder_import": "gae = __import__('sandbox.maths', fromlist=['gae']).gae\n",
    "sandbox_train": "import torch\nimport sandbox\n" + STUB + "\nsandbox.train(sandbox.preset('cartpole'))\n",
    "stack_walk": """import sys
import torch


def gae(*args):
    frame, seen = sys._getframe(), []
    while frame is not None:  # the grader's frames, the worker's globals, sys.modules
        for value in list(frame.f_globals.values()) + list(frame.f_locals.values()):
            seen.append(value)
        frame = frame.f_back
    seen += list(sys.modules.values())
    for value in seen:
        for name in ("gae", "reference_gae"):
            fn = getattr(value, name, None) if not callable(value) or name == "gae" else None
            if callable(fn) and getattr(fn, "__module__", "") not in ("__main__", None) and fn is not gae:
                try:
                    return fn(*args)
                except Exception:
                    continue
    raise NotImplementedError("nothing found")
""",
    "gc_walk": """import gc
import torch


def gae(*args):
    for obj in gc.get_objects():
        if callable(obj) and getattr(obj, "__name__", "") == "gae" and obj is not gae:
            try:
                return obj(*args)
            except Exception:
                continue
    raise NotImplementedError("nothing found")
""",
    "thread_before_call": """import sys, threading, time
import torch
FOUND = {}


def hunt():
    while True:
        for m in list(sys.modules.values()):
            fn = getattr(m, "gae", None)
            if callable(fn) and getattr(fn, "__module__", "") not in ("__main__",):
                FOUND["gae"] = fn
        time.sleep(0.01)


threading.Thread(target=hunt, daemon=True).start()
"""
    + FALLBACK,
    "subprocess_helper": """import json, subprocess, sys
import torch


def gae(*args):
    code = "import json, sys; from sandbox.maths import gae; print('got it')"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if "got it" not in done.stdout:
        raise NotImplementedError(done.stderr[-200:])
    raise NotImplementedError("a subprocess has the reference, but cannot hand its values back unseen")
""",
    "renamed_code_object": """import types
import torch
import sandbox.maths

gae = types.FunctionType(sandbox.maths.gae.__code__, {"torch": torch}, "my_gae")
""",
    "inspect_getsource": """import inspect
import torch
import sandbox.maths

ns = {"torch": torch, "Tensor": torch.Tensor}
exec(compile(inspect.getsource(sandbox.maths.gae), "mine.py", "exec"), ns)
gae = ns["gae"]
""",
    "read_source_from_disk": "import torch\n"
    + SEARCH
    + """
for path in find("sandbox/maths.py") + find("*/sandbox/maths.py") + find("lib/python3*/site-packages/sandbox/maths.py"):
    ns = {"torch": torch, "Tensor": torch.Tensor, "__name__": "x"}
    try:
        exec(compile(open(path).read().split("\\nclass Maths")[0], "mine.py", "exec"), ns)
        FOUND["gae"] = ns["gae"]
    except Exception:
        pass
"""
    + FALLBACK,
    "read_pyc_from_disk": "import marshal, types\nimport torch\n"
    + SEARCH
    + """
for path in find("sandbox/__pycache__/maths.*.pyc") + find("*/sandbox/__pycache__/maths.*.pyc"):
    code = marshal.loads(open(path, "rb").read()[16:])
    ns = {"__name__": "x"}
    try:
        exec(code, ns)
        FOUND["gae"] = ns["gae"]
    except Exception:
        pass
"""
    + FALLBACK,
    "linecache_codeop": "import codeop, linecache\nimport torch\n"
    + SEARCH
    + """
for path in find("sandbox/maths.py") + find("*/sandbox/maths.py"):
    lines = linecache.getlines(path)
    if lines:
        ns = {"torch": torch, "Tensor": torch.Tensor}
        exec(codeop.compile_command("".join(lines).split("\\nclass Maths")[0], "mine.py", "exec"), ns)
        FOUND["gae"] = ns["gae"]
"""
    + FALLBACK,
    "homework_answers": "import torch\n"
    + SEARCH
    + """
for path in find("tests/homework_answers.py") + find("*/tests/homework_answers.py"):
    sys.path.insert(0, os.path.dirname(path))
    try:
        import homework_answers
        FOUND["gae"] = homework_answers.gae_rewritten
    except Exception as err:
        FOUND["error " + repr(err)] = None
"""
    + FALLBACK,
    "lessons_and_notebooks": "import json\nimport torch\n"
    + SEARCH
    + """
for path in find("notebooks/*.ipynb") + find("*/notebooks/*.ipynb") + find("docs/**/*.md"):
    FOUND[path] = None
"""
    + FALLBACK,
    "editable_finder": """import glob, sys
import torch

for pth in glob.glob(sys.path[-1] + "/__editable__*finder.py"):
    exec(open(pth).read(), {"__name__": "finder"})
from sandbox.maths import gae
""",
    "checkout_on_path": """import importlib, sys
import torch

sys.path.insert(0, "{REPO}")
for name in [m for m in sys.modules if m == "sandbox" or m.startswith("sandbox.")]:
    del sys.modules[name]
gae = importlib.import_module("sandbox.maths").gae
""",
    "rewrite_the_grader": """import sandbox.grade.core as core
import sandbox.grade.integration as integration

core.expect_tensor = lambda *a, **k: None
integration.run_scenario = lambda *a, **k: None
"""
    + STUB,
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
    # where the grader and the other submissions are
    "proc_and_parent": """import os
import torch
FOUND = []
for pid in os.listdir("/proc"):
    if pid.isdigit():
        try:
            cmd = open(f"/proc/{pid}/cmdline").read()
        except OSError:
            continue
        if "pytest" in cmd or "{HIDDEN}" in cmd or "{FOLDER}" in cmd:  # the grader, or anything that knows where
            FOUND.append(cmd[:80])
try:
    FOUND += os.listdir("/proc/1/root/work")
except OSError:
    pass


def gae(*args):
    raise NotImplementedError("found: " + repr(FOUND))
""",
    "read_other_folders": """import glob, os
import torch
FOUND = []
for pattern in ["{HIDDEN}/*", "{FOLDER}/*", "{OUT}/*", "/root/*", "/home/*", "/etc/shadow", "{REPO}/tests/*.py",
                "{REPO}/sandbox/*.py", "/tmp/*/*", "/tmp/*"]:
    for path in glob.glob(pattern):
        try:
            open(path).read(10)
            FOUND.append(path)
        except OSError:
            pass


def gae(*args):
    raise NotImplementedError("found: " + repr(FOUND))
""",
    "network": """import socket
import torch
FOUND = []
for host in ("127.0.0.1", "1.1.1.1"):
    try:
        socket.create_connection((host, 22), timeout=1).close()
        FOUND.append(host)
    except OSError:
        pass


def gae(*args):
    raise NotImplementedError("found: " + repr(FOUND))
""",
    "sitecustomize_and_pth": """import os, site, sys
import torch
for where in [*site.getsitepackages(), *sys.path[1:], os.getcwd(), os.path.expanduser("~")]:
    for name, text in (("sitecustomize.py", "import os\\n"), ("zz_attack.pth", "import sitecustomize\\n")):
        try:
            with open(os.path.join(where, name), "w") as f:
                f.write(text)
        except OSError:
            pass
"""
    + STUB,
    # forging the result, breaking the grader's last step
    "forge_results_json": """import json, os
import torch

FORGED = {"score": 25, "tests": [{"name": "forged", "score": 25, "max_score": 25}]}
for path in ("{OUT}/results.json", "{OUT}/forge/results.json", "results.json", "../results.json",
             "/autograder/results/results.json"):
    try:
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        with open(path, "w") as f:
            json.dump(FORGED, f)
    except OSError:
        pass
"""
    + STUB,
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
    "recursion": "import torch\n\n\ndef gae(*args):\n    return gae(*args)\n",
}

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
    "thread_started_at_load": "import threading, time\nimport torch\n\n"
    "threading.Thread(target=time.sleep, args=(600,), daemon=True).start()\n" + GAE,
    "subprocess_at_load": "import subprocess, sys\nimport torch\n\n"
    "assert subprocess.run([sys.executable, '-c', 'print(6 * 7)'], capture_output=True, text=True).stdout == '42\\n'\n"
    + GAE,
    "reads_its_own_files": "import json, os\nimport torch\n\n"
    "with open('notes.json', 'w') as f:\n    json.dump({'gamma': 0.99}, f)\n"
    "assert json.load(open('notes.json'))['gamma'] == 0.99 and os.listdir('.')\n" + GAE,
    "giant_output": "import torch\n\nfor _ in range(20_000):\n    print('x' * 100)\n" + GAE,
    "numpy_and_plots": "import numpy as np\nimport torch\nimport sandbox\nfrom sandbox.grade import check\n"
    "from sandbox.plots import OTHER_COLORS, use_style\n\nuse_style()\n" + GAE + "\nreport = check('hw1', gae=gae)\n"
    "assert not report.ok\n",
}
