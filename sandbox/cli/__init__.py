"""The ``sandbox`` command: ``train``, ``eval``, ``sweep``, ``report``, ``pretrain``, ``bench``, ``demo``, ``grade``,
``doctor``.

Each command lives in the package it drives (:data:`HOMES`): there, its arguments (a dataclass whose fields are its
flags and whose field docstrings are its ``--help``, read by :func:`sandbox.cli.parsing.parse`), their checks and
what it runs. ``sandbox train`` lives here: every flag of it is a field of :class:`sandbox.config.Config`. Bad input
ends with one line on stderr naming the flag and what it allows, and exit code 2.
"""

from __future__ import annotations

import dataclasses
import importlib
import sys
import time
import typing
from pathlib import Path
from typing import Annotated, Callable, Sequence

import tyro

from ..algos.learner import NonFiniteLossError
from ..config import KIND_DEFAULTS, KINDS, PRESETS, RENAMED, SECTIONS, Config, ConfigError, applies, preset, validate
from ..runs.rundir import latest_checkpoint
from ..training import resume, train
from .parsing import UsageError, parse

USAGE = """usage: sandbox COMMAND [flags]    (sandbox COMMAND --help for its flags)

commands:
  train   train one run: sandbox train --algo ppo --env CartPole-v1 --dropout 0.1 --dropout-mode consistent
          (sandbox train --resume RUN_DIR continues an interrupted run from its last checkpoint)
  eval    what a saved policy does: sandbox eval RUN_DIR --episodes 20 [--deterministic] [--gif out.gif]
          [--env-params NAME VALUE ...]
  demo    the headline experiment (about 3 minutes): dropout modes on PPO/CartPole and GRPO/lang:reverse, and its report
  sweep   a grid of runs, in parallel, resumable: sandbox sweep SPEC.toml --out DIR
  report  statistics and figures of a sweep: sandbox report DIR
  pretrain  the reference model of a language task (cached): sandbox pretrain --env lang:reverse
  bench   benchmarks against a peer: sandbox bench cartpole (PPO vs stable-baselines3), sandbox bench lang
          (GRPO vs TRL), sandbox bench sweep (2 workers vs 1), sandbox bench report (a 100-run report); the
          studies: sandbox bench grpo-lambda|flatness|breadth|mechanisms|minatar --out DIR
  grade   grade homework: sandbox grade hw1 my_gae.ipynb (a .py, a notebook or a folder of them)
          [--format text|json|gradescope] [--hidden DIR] [--workers N] [--timeout S]; sandbox grade bundle hw1
          writes a Gradescope autograder
  doctor  is this machine ready for the course? versions against the lock, a short PPO run, a GIF, Jupyter (30 s)
"""


HOMES = {
    "train": __name__,
    "eval": "sandbox.runs.command",
    "demo": "sandbox.analysis.command",
    "sweep": "sandbox.analysis.command",
    "report": "sandbox.analysis.command",
    "pretrain": "sandbox.runs.command",
    "bench": "sandbox.bench.command",
    "grade": "sandbox.grade.command",
    "doctor": "sandbox.doctor",
}
"""command -> the module that owns it: its ``COMMANDS`` table gives the command's arguments (a dataclass, whose fields
are its flags and whose field docstrings its ``--help``, or a function of the argument list) and what it runs, which
checks them first. A module is imported only when its command runs."""


def resolve(argv: list[str]) -> tuple[Callable[[list[str]], object], Callable[[object], int], list[str]]:
    """``sandbox NAME [SUBCOMMAND] ARGS``: (the reader of ARGS, the runner of what it read: the exit code, ARGS). A
    subcommand is an entry ``"NAME SUBCOMMAND"`` of the owner's table (``sandbox grade bundle``)."""
    name, table = argv[0], importlib.import_module(HOMES[argv[0]]).COMMANDS
    if len(argv) > 1 and f"{name} {argv[1]}" in table:
        name, argv = f"{name} {argv[1]}", argv[1:]
    reads, run = table[name]
    read = (lambda args: parse(reads, args, f"sandbox {name}")) if isinstance(reads, type) else reads
    return read, run, argv[1:]


# --- sandbox train ----------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Resume:
    """``sandbox train --resume RUN_DIR [--quiet]``: continue a run from its last checkpoint."""

    run_dir: Path
    quiet: bool


def _take_flag(args: list[str], flag: str, needs: str) -> tuple[str | None, list[str]]:
    """Take ``flag VALUE`` (or ``flag=VALUE``) out of the arguments, for the flags handled before tyro parses the
    rest (``--preset`` sets defaults that flags override; ``--resume`` replaces the config)."""
    rest, value = [], None
    it = iter(args)
    for a in it:
        if a == flag:
            value = next(it, None)
            if value is None:
                raise UsageError(f"{flag}: needs {needs}")
        elif a.startswith(f"{flag}="):
            value = a.split("=", 1)[1]
        else:
            rest.append(a)
    return value, rest


def default_out(cfg: Config) -> str:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    env = cfg.env.replace("/", "_").replace(":", "_")
    return f"runs/{env}-{cfg.algo}-{cfg.dropout_mode}-p{cfg.dropout:g}-s{cfg.seed}-{stamp}"


def _report_run(result) -> None:
    s = result.summary
    solved = (
        f"solved at {s['solved_at_steps']:,} steps / {s['solved_at_s']:.1f} s"
        if s.get("solved_at_steps") is not None
        else "not solved"
    )
    final = f"{s['final_return']:.1f}" if s.get("final_return") is not None else "n/a"
    print(f"final return {final} | {solved} | {s['env_steps']:,} steps in {s['total_s']:.1f} s | {result.run_dir}")


def parse_train(args: list[str]) -> Config | Resume:
    """``sandbox train``'s arguments: the validated config, or the run to continue (``--resume``)."""
    run_dir, args = _take_flag(args, "--resume", "the run directory to continue")
    if run_dir is not None:  # the run's own config.json decides everything; only --quiet may be added
        extra = [a for a in args if a != "--quiet"]
        if extra:
            raise UsageError(
                f"--resume continues a run with its own config.json; drop {' '.join(extra)} (only --quiet may be added)"
            )
        return Resume(Path(run_dir), quiet="--quiet" in args)
    for old, new in RENAMED.items():
        flag = "--" + old.replace("_", "-")
        if any(a == flag or a.startswith(flag + "=") for a in args):
            raise UsageError(f"{flag}: renamed --{new.replace('_', '-')}")
    name, rest = _take_flag(args, "--preset", f"a name; one of: {', '.join(PRESETS)}")
    base = preset(name) if name is not None else Config()
    description = (
        "Train one run and write its run directory (config.json, metrics.csv, episodes.csv, "
        f"summary.json). --preset NAME starts from a preset ({', '.join(PRESETS)}); flags override it."
    )
    if "--help" in rest or "-h" in rest:  # the flags that apply to the kind of run asked for, with its defaults
        kind = _kind_asked(rest, base)
        description += f" The flags of {KINDS[kind]} (--algo and --env choose; --help without them: PPO on Gym)."
        shown = base.replace(**{k: v for k, v in KIND_DEFAULTS[kind].items() if getattr(base, k) is None})
        parser = train_args(kind)
        sections = {f.name: f.type(**dataclasses.asdict(shown.sections()[f.name])) for f in dataclasses.fields(parser)}
        parse(parser, rest, "sandbox train", default=parser(**sections), description=description)
    sections = parse(TrainArgs, rest, "sandbox train", default=TrainArgs(**base.sections()), description=description)
    return validate(Config.from_sections(vars(sections)))


def train_args(kind: str | None = None) -> type:
    """The parser of ``sandbox train``'s flags: one ``--help`` section per section of the config, each flag under its
    usual name. With ``kind``, only the sections and the fields that apply to that kind of run
    (:func:`sandbox.config.applies`; the others are parsed, then refused, but not shown)."""
    fields = []
    for name in applies(kind) if kind else SECTIONS:
        section = SECTIONS[name]
        hidden = [f for f in dataclasses.fields(section) if kind and f.name not in applies(kind, name)]
        if hidden:  # the section, with the fields that do not apply left out of --help
            hints = typing.get_type_hints(section)
            suppressed = [(f.name, Annotated[hints[f.name], tyro.conf.Suppress], f) for f in hidden]
            section = dataclasses.make_dataclass(section.__name__, suppressed, bases=(section,),
                                                 namespace={"__doc__": section.__doc__})  # fmt: skip
        fields.append((name, Annotated[section, tyro.conf.OmitArgPrefixes]))
    return dataclasses.make_dataclass("TrainArgs", fields)


def _kind_asked(args: list[str], base: Config) -> str:
    """The kind of run (:data:`sandbox.config.KINDS`) that ``--algo`` and ``--env`` in ``args`` ask for."""
    algo, _ = _take_flag(args, "--algo", "an algorithm")
    env, _ = _take_flag(args, "--env", "an env id")
    probe = base.replace(algo=algo or base.algo, env=env or base.env)
    return probe.kind if probe.kind in KINDS else "ppo"


TrainArgs = train_args()


def cmd_train(parsed: Config | Resume) -> int:
    if isinstance(parsed, Resume):
        _report_run(resume(parsed.run_dir, quiet=parsed.quiet))
        return 0
    cfg = parsed if parsed.out is not None else parsed.replace(out=default_out(parsed))
    try:
        _report_run(train(cfg))
    except KeyboardInterrupt:
        if latest_checkpoint(cfg.out) is None:
            raise
        print(
            f"sandbox train: interrupted; continue from the last checkpoint with: sandbox train --resume {cfg.out}",
            file=sys.stderr,
        )
        return 130
    return 0


COMMANDS = {"train": (parse_train, cmd_train)}
"""command -> (how it reads its argument list, what it does with what it read: the exit code)."""


def parse_command(argv: Sequence[str]) -> tuple[str, object]:
    """Parse a command line without running it: ``(command, its parsed arguments)``. Raises :class:`UsageError` or
    :class:`~sandbox.config.ConfigError` (one line), as the command itself would."""
    if not argv or argv[0] not in HOMES:
        raise UsageError(f"unknown command {argv[0] if argv else ''!r}; one of: {', '.join(HOMES)}")
    read, _, rest = resolve(list(argv))
    return argv[0], read(rest)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE, end="")
        return 0 if argv else 2
    name = argv[0]
    if name not in HOMES:
        print(f"sandbox: error: unknown command {name!r}; one of: {', '.join(HOMES)}", file=sys.stderr)
        return 2
    read, run, rest = resolve(argv)
    try:
        return run(read(rest))
    except (UsageError, ConfigError) as err:
        print(f"sandbox {name}: error: {err}", file=sys.stderr)
        return 2
    except NonFiniteLossError as err:
        print(f"sandbox {name}: stopped: {err}. Every row up to the last update was kept.", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"sandbox {name}: interrupted", file=sys.stderr)
        return 130
