"""The Gradescope autograder of an assignment (``sandbox grade bundle HW``): a zip that Gradescope unpacks into
``/autograder/source``.

- ``setup.sh`` (run once, as root, when Gradescope builds the image): a Python environment in ``/opt/sandbox-env``
  that every user can read (the README's three pip commands, from the lock), the package installed from the zip's
  copy of the repository (editable, so its source stays in ``/autograder/source``), an unprivileged user for the
  submissions, and ``/autograder/source`` made root's only: the grader, the reference implementations and the
  hidden cases are out of that user's reach.
- ``run_autograder`` (run as root for each submission): ``sandbox grade HW /autograder/submission --upload --format
  gradescope --out /autograder/results/results.json --user USER``. The submission's process runs as that user, so
  it can neither read the source nor write the results; whatever happens, the grader writes ``results.json`` itself.
- ``hidden/HW.json``, your hidden cases, when given; an assignment of your own is copied as ``assignment/``.

``AUTOGRADER`` and ``SANDBOX_ENV`` (environment variables) move the two roots, which is how ``tests/test_grade.py``
tries the bundle in a temporary folder laid out as Gradescope does.
"""

from __future__ import annotations

import shlex
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
REPO_FILES = ("pyproject.toml", "requirements.lock", "constraints.txt", "README.md", "LICENSE")

SETUP = """#!/usr/bin/env bash
# Gradescope runs this once, as root, when it builds the autograder's image (sandbox grade bundle wrote it).
set -eu
AUTOGRADER="${{AUTOGRADER:-/autograder}}"
ENV="${{SANDBOX_ENV:-/opt/sandbox-env}}"
REPO="$AUTOGRADER/source/repo"
if [ ! -x "$ENV/bin/python" ]; then
    command -v python3.11 >/dev/null || {{ apt-get update && apt-get install -y python3.11 python3.11-venv; }}
    python3.11 -m venv "$ENV"
    "$ENV/bin/python" -m pip install --quiet -c "$REPO/requirements.lock" pip setuptools
    "$ENV/bin/python" -m pip install --quiet --no-deps -c "$REPO/requirements.lock" \\
        --extra-index-url https://download.pytorch.org/whl/cpu torch
    "$ENV/bin/python" -m pip install --quiet --no-build-isolation -c "$REPO/requirements.lock" -e "$REPO[dev]"
fi
chmod -R a+rX "$ENV"
id -u {user} >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin {user}
chmod 700 "$AUTOGRADER/source"  # the grader, the reference implementations and the hidden cases: root's only
"""

RUN = """#!/usr/bin/env bash
# Gradescope runs this as root for each submission (sandbox grade bundle wrote it): the student's code runs as {user},
# who can read neither /autograder/source nor write /autograder/results; the grader writes results.json itself.
set -u
AUTOGRADER="${{AUTOGRADER:-/autograder}}"
ENV="${{SANDBOX_ENV:-/opt/sandbox-env}}"
SOURCE="$AUTOGRADER/source"
mkdir -p "$AUTOGRADER/results"
cd "$SOURCE/repo"
PYTHONPATH="$SOURCE/repo" "$ENV/bin/python" -m sandbox grade {hw} "$AUTOGRADER/submission" --upload \\
    --format gradescope --out "$AUTOGRADER/results/results.json" \\
    --overwrite --user {user} --isolation "${{SANDBOX_ISOLATION:-auto}}"{hidden}
status=$?
[ "$status" -le 1 ] || exit "$status"  # 1: a test failed, a grade like any other; 2: the bundle is misconfigured
"""


def write_bundle(assignment, given: str, out: Path, hidden: Path | None, user: str) -> None:
    """The zip for ``assignment`` (``given``: as named on the command line, a key or a folder) at ``out``."""
    custom = given not in ("hw1", "hw2", "hw3", "hw4", "hw5", "hw6")
    hw = '"$SOURCE/assignment"' if custom else assignment.key
    extra = ' --hidden "$SOURCE/hidden"' if hidden else ""
    files: dict[str, bytes | Path] = {
        "setup.sh": SETUP.format(user=shlex.quote(user)).encode(),
        "run_autograder": RUN.format(hw=hw, user=shlex.quote(user), hidden=extra).encode(),
    }
    for name in REPO_FILES:
        if (REPO / name).is_file():
            files[f"repo/{name}"] = REPO / name
    for folder, pattern in (("sandbox", "**/*.py"), ("notebooks/homework", "hw*_*.py")):
        for p in sorted((REPO / folder).glob(pattern)):
            if "__pycache__" not in p.parts:
                files[f"repo/{p.relative_to(REPO).as_posix()}"] = p
    if hidden:  # named after the key the assignment has where it is graded (an own assignment's folder: assignment)
        files[f"hidden/{'assignment' if custom else assignment.key}.json"] = hidden / f"{assignment.key}.json"
    if custom:
        for p in sorted(Path(given).iterdir()):
            if p.is_file():
                files[f"assignment/{p.name}"] = p
    out.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for name, content in files.items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (0o755 if name in ("setup.sh", "run_autograder") else 0o644) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(info, content if isinstance(content, bytes) else content.read_bytes())
