"""The ``sandbox`` command: ``train``, ``eval``, ``sweep``, ``report``, ``pretrain``, ``bench``, ``demo``, ``grade``,
``doctor``.

Every flag of ``sandbox train`` is a field of :class:`sandbox.config.Config`; its help is the field's docstring.
Bad input ends with one line on stderr naming the flag and what it allows, and exit code 2.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import io
import sys
import time
import types
import typing
from pathlib import Path
from typing import Annotated, Callable, Literal, Sequence

import tyro

from .algos.learner import NonFiniteLossError
from .analysis.cluster import Backend
from .config import GROUPS, KINDS, MINATAR_GAMES, PRESETS, RENAMED, Config, ConfigError, applies, preset, validate
from .runs.rundir import latest_checkpoint
from .training import check, resume, train

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


class UsageError(Exception):
    """Bad command-line input; the message is one line."""


# --- parse errors in one line --------------------------------------------------------------------------------------
#
# tyro parses every command. When it refuses the input it prints a box of several lines and exits with code 2; the
# command says what is wrong in one line instead, naming the flag. tyro's public API gives no structured parse error
# (its only hook, tyro._errors.on_parse_error, is private and may change in any release), so once tyro has refused
# the input (SystemExit 2, its box held back), _parse_error reads the arguments again against the command's dataclass
# the way tyro reads them: a field is --field-name (--field_name too), a bool also --no-field-name, a Positional field
# is taken by position, a value follows its flag or its "=", a tuple or a dict takes the values up to the next flag,
# "None" is None for an optional field, "-5" is a value and "--" ends the flags. It finds the first problem in tyro's
# order: as the arguments are read, a flag without its value or a value that is not one of the choices; then the
# required arguments missing; then the arguments nothing takes; then the first value that does not convert, in the
# fields' order, with tyro's reason. Where it finds nothing, or the dataclass has a field of a kind it does not read,
# tyro's own message is printed. tests/test_cli.py holds the lines; on tyro 1.0.17 they are the ones tyro's private
# hook gave, on every command line tried.


@dataclasses.dataclass
class _Arg:
    """One argument of a command, as tyro reads it from a field of the command's dataclass."""

    name: str  # as messages name it: --dropout-mode; run-dir for a positional
    positional: bool
    values: Literal["none", "one", "many"]  # none: a bool flag; many: a tuple or a dict (values up to the next flag)
    choices: tuple[str, ...] | None
    required: bool
    convert: Callable[[list[str]], object]  # raises ValueError with the reason tyro gives


class _Unmodelled(Exception):
    """A field of a kind :func:`_parse_error` does not read: tyro's own message is shown."""


class _Given(str):
    """A value given after "=" (``--out=x``): a value even when it looks like a flag."""


def _reading(tp) -> tuple[str, tuple[str, ...] | None, Callable[[list[str]], object], str]:
    """How tyro reads a field of type ``tp``: its :class:`_Arg` ``values``, ``choices`` and ``convert``, and the type
    as tyro's messages name it (``float``, ``[str float [str float ...]]``)."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is bool:
        return "none", None, bool, "bool"
    if tp in (int, float, str):
        return "one", None, lambda v: tp(v[0]), tp.__name__
    if origin is Literal:
        return "one", tuple(str(a) for a in args), lambda v: v[0], "str"
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis and args[0] in (int, float, str):

        def items(v: list[str]) -> tuple:
            try:
                return tuple(args[0](x) for x in v)
            except ValueError:
                raise ValueError(f"Could not find valid parse for arguments: {v}") from None

        return "many", None, items, f"[{args[0].__name__} [{args[0].__name__} ...]]"
    if origin is dict and len(args) == 2 and args[0] is str and args[1] in (int, float, str):

        def pairs(v: list[str]) -> dict:
            try:
                if len(v) % 2:
                    raise ValueError
                return {k: args[1](x) for k, x in zip(v[::2], v[1::2])}
            except ValueError:
                raise ValueError("Failed to parse key-value pairs!") from None

        return "many", None, pairs, f"[str {args[1].__name__} [str {args[1].__name__} ...]]"
    if origin in (typing.Union, types.UnionType) and len(args) == 2 and type(None) in args:
        values, choices, convert, what = _reading(next(a for a in args if a is not type(None)))
        if values == "none" or choices is not None:
            raise _Unmodelled(tp)

        def optional(v: list[str]):
            if v == ["None"]:
                return None
            try:
                return convert(v)
            except ValueError:
                raise ValueError(f"cannot read {', '.join(map(repr, v))} as {what} or None") from None

        return values, None, optional, f"{what} or None"
    raise _Unmodelled(tp)


def _arguments(cls, required: bool) -> list[_Arg]:
    """The arguments of dataclass ``cls`` in the order of its fields (a nested dataclass marked OmitArgPrefixes, as
    sandbox train's topic groups are, gives its fields' flags unprefixed). ``required``: fields without a default
    must be given (no default instance was passed to tyro)."""
    hints = typing.get_type_hints(cls, include_extras=True)
    out = []
    for f in dataclasses.fields(cls):
        tp, markers = hints[f.name], ()
        if typing.get_origin(tp) is Annotated:
            tp, markers = typing.get_args(tp)[0], tp.__metadata__
        for m in markers:  # Positional, OmitArgPrefixes, and tyro.conf.arg with a metavar or help only
            if m not in (tyro.conf.Positional, tyro.conf.OmitArgPrefixes) and not (
                hasattr(m, "metavar") and all(getattr(m, a, None) is None for a in ("name", "aliases", "prefix_name"))
            ):
                raise _Unmodelled(m)
        if dataclasses.is_dataclass(tp):
            if tyro.conf.OmitArgPrefixes not in markers:
                raise _Unmodelled(tp)
            out += _arguments(tp, required=False)
            continue
        values, choices, convert, _ = _reading(tp)
        positional = tyro.conf.Positional in markers
        if positional and values != "one":
            raise _Unmodelled(tp)
        name = f.name.replace("_", "-")
        given = f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
        out.append(_Arg(name if positional else f"--{name}", positional, values, choices, required and not given,
                        convert))  # fmt: skip
    return out


def _normalized(key: str) -> str:
    """``--total_steps`` -> ``--total-steps`` (tyro takes either; leading and trailing underscores stay)."""
    if not (len(key) > 2 and key.startswith("--")) or not key[2:].strip("_"):
        return key
    body = key[2:]
    core = body.strip("_")
    start = body.index(core)
    return "--" + body[:start] + core.replace("_", "-") + body[start + len(core) :]


def _negative_number(token: str) -> bool:
    """``-5``, ``-.5``, ``-1e9``, ``-inf``: a value, not a flag."""
    if not (token.startswith("-") and len(token) > 1 and token[1] != "-"):
        return False
    return token[1].isdigit() or token[1] == "." or token[1:].lower() in ("inf", "infinity", "nan")


def _flag_like(token: str) -> bool:
    """``-x``, ``--bogus``: a dash and a letter."""
    return token.startswith("-") and len(token) > 1 and token.lstrip("-")[:1].isalpha()


def _parse_error(cls, args: list[str], required: bool) -> str | None:
    """The one-line reason tyro refused ``args`` for dataclass ``cls`` (see the comment above), or None."""
    try:
        arguments = _arguments(cls, required)
    except _Unmodelled:
        return None
    flags = {a.name: a for a in arguments if not a.positional}
    flags |= {f"--no-{a.name[2:]}": a for a in arguments if not a.positional and a.values == "none"}
    positionals = collections.deque(a for a in arguments if a.positional)
    known = lambda key: key in flags or _normalized(key) in flags  # noqa: E731
    given: dict[str, list[str]] = {}
    unknown: list[str] = []
    tokens = collections.deque(args)
    after_dashes = False

    def blocks(token: str) -> bool:
        """Whether ``token`` ends an argument's values: "--", a known flag or a flag-like token."""
        if isinstance(token, _Given):
            return False
        key = token.partition("=")[0]
        return token == "--" or known(key) or (not _negative_number(key) and _flag_like(key))

    def take(a: _Arg) -> str | None:
        """Read ``a``'s values from the front of ``tokens``; the error tyro stops at, if any."""
        taken: list[str] = []
        ends = lambda t: not after_dashes and blocks(t) and t not in (a.choices or ())  # noqa: E731
        if a.values == "one":
            if not tokens or ends(tokens[0]):
                return f"{a.name}: missing or unexpected value"
            taken.append(str(tokens.popleft()))
        else:
            while len(tokens) > len(positionals) and not ends(tokens[0]):  # a value left for each positional to come
                taken.append(str(tokens.popleft()))
        for v in taken:
            if a.choices is not None and v not in a.choices:
                return f"{a.name}: invalid choice {v!r}; one of: {', '.join(a.choices)}"
        given[a.name] = taken
        return None

    while tokens:
        token = tokens.popleft()  # as tyro does, a value given after "=" is read here as any argument is
        if token == "--" and not after_dashes:
            after_dashes = True
            continue
        if not after_dashes:
            if token in ("-h", "--help"):
                return None
            key, eq, value = token.partition("=") if token.startswith("--") and len(token) > 2 else (token, "", "")
            key = _normalized(key)
            if eq and key in flags:
                tokens.extendleft([_Given(value), key])
                continue
            if key in flags:
                if flags[key].values != "none" and (error := take(flags[key])):
                    return error
                continue
        if positionals:
            tokens.appendleft(token)
            if error := take(positionals.popleft()):
                return error
            continue
        unknown.append(str(token))
    missing = [a.name for a in [*positionals, *(a for a in arguments if not a.positional)]
               if a.required and a.name not in given]  # fmt: skip
    if missing:
        return f"missing required arguments: {', '.join(missing)}"
    if unknown:
        return f"unrecognized arguments: {' '.join(unknown)} (see --help)"
    for a in arguments:
        if a.name in given:
            try:
                a.convert(given[a.name])
            except ValueError as err:
                return f"{a.name}: {next((x.strip() for x in str(err).splitlines() if x.strip()), 'bad value')}"
    return None


def _parse(cls, args: Sequence[str], prog: str, default=None, description: str | None = None):
    """``tyro.cli(cls)`` on ``args``. Input tyro refuses raises a one-line :class:`UsageError` (:func:`_parse_error`);
    where that finds nothing to say, tyro's own message is printed and its exit code 2 kept. ``--help`` prints the
    help and exits with 0, as tyro does."""
    captured = io.StringIO()
    try:
        with contextlib.redirect_stderr(captured):
            parsed = tyro.cli(cls, args=list(args), prog=prog, default=default, description=description)
    except SystemExit as exit_:
        if exit_.code not in (0, None):
            message = _parse_error(cls, list(args), required=default is None)
            if message is not None:
                raise UsageError(message) from None
        sys.stderr.write(captured.getvalue())
        raise
    sys.stderr.write(captured.getvalue())
    return parsed


# --- sandbox train -----------------------------------------------------------------------------------------------


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


def parse_train(args: list[str]) -> Config | Path:
    """``sandbox train``'s arguments: the validated config, or the run directory of ``--resume``."""
    run_dir, args = _take_flag(args, "--resume", "the run directory to continue")
    if run_dir is not None:  # the run's own config.json decides everything; only --quiet may be added
        extra = [a for a in args if a != "--quiet"]
        if extra:
            raise UsageError(
                f"--resume continues a run with its own config.json; drop {' '.join(extra)} (only --quiet may be added)"
            )
        return Path(run_dir)
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
    if "--help" in rest or "-h" in rest:  # the flags of the groups that apply to the kind of run asked for
        kind = _kind_asked(rest, base)
        description += f" The flags of {KINDS[kind]} (--algo and --env choose; --help without them: PPO on Gym)."
        groups = applies(kind)
        parser = train_args(groups)
        _parse(parser, rest, "sandbox train", default=parser(**{g: base.groups()[g] for g in groups}),
               description=description)  # fmt: skip
    groups = _parse(TrainArgs, rest, "sandbox train", default=TrainArgs(**base.groups()), description=description)
    return validate(Config.from_groups(vars(groups)))


def train_args(groups: Sequence[str]) -> type:
    """The parser of ``sandbox train``'s flags for ``groups`` (names of :data:`sandbox.config.GROUPS`): one ``--help``
    section per group, each flag under its usual name."""
    fields = [(name, Annotated[GROUPS[name], tyro.conf.OmitArgPrefixes]) for name in groups]
    return dataclasses.make_dataclass("TrainArgs", fields)


def _kind_asked(args: list[str], base: Config) -> str:
    """The kind of run (:data:`sandbox.config.KINDS`) that ``--algo`` and ``--env`` in ``args`` ask for."""
    algo, _ = _take_flag(args, "--algo", "an algorithm")
    env, _ = _take_flag(args, "--env", "an env id")
    probe = base.replace(algo=algo or base.algo, env=env or base.env)
    return probe.kind if probe.kind in KINDS else "ppo"


TrainArgs = train_args(list(GROUPS))


def cmd_train(args: list[str]) -> int:
    parsed = parse_train(args)
    if isinstance(parsed, Path):
        _report_run(resume(parsed, quiet="--quiet" in args))
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


# --- sandbox eval --------------------------------------------------------------------------------------------------


@dataclasses.dataclass
class EvalArgs:
    """Evaluate a saved policy: a run directory (its policy.pt) or a policy.pt / checkpoint file. Gym envs: the mean
    and std of the return, and an animated GIF of one episode with --gif. Language tasks: sample completions with
    their rewards."""

    run_dir: Annotated[str, tyro.conf.Positional]
    """The run directory, or a policy.pt / checkpoints/update-NNNNNN.pt file."""
    episodes: int = 20
    """Episodes to play (language tasks: prompts to complete)."""
    deterministic: bool = False
    """Take the most likely action (argmax; the Gaussian's mean; greedy decoding) instead of sampling."""
    dropout: Literal["eval", "as-run"] = "eval"
    """eval: no dropout, as a deployed policy runs. as-run: dropout as the run's rollouts had it (on in modes naive
    and consistent, at the p the policy was saved with)."""
    seed: int = 0
    """Seeds the first episode's reset (or the prompts) and the sampling."""
    gif: str | None = None
    """Write episode 1 as an animated GIF here (Gym envs with rgb_array rendering)."""
    gif_max_frames: int = 500
    """At most this many frames in the GIF (CartPole renders at 50 frames/s)."""
    show: int = 5
    """Language tasks: completions to print."""
    env_params: dict[str, float] | None = None
    """Evaluate on another variant of the env: --env-params masscart 10 (default: the run's own --env-params)."""
    quiet: bool = False
    """Print nothing."""


def parse_eval(args: list[str]) -> EvalArgs:
    return _parse(EvalArgs, args, "sandbox eval")


def cmd_eval(args: list[str]) -> int:
    a = parse_eval(args)
    if not (0 <= a.seed < 2**32):
        raise ConfigError("seed", f"must be an integer in [0, 2**32), got {a.seed}")
    from .runs.evaluate import evaluate

    evaluate(
        a.run_dir,
        a.episodes,
        a.deterministic,
        a.dropout,
        a.seed,
        a.gif,
        a.gif_max_frames,
        a.show,
        a.quiet,
        a.env_params,
    )
    return 0


# --- sandbox bench -----------------------------------------------------------------------------------------------


@dataclasses.dataclass
class BenchArgs:
    """Benchmarks, run side by side with a peer in one command."""

    target: Annotated[
        Literal[
            "cartpole",
            "lang",
            "sweep",
            "report",
            "population",
            "grpo-lambda",
            "flatness",
            "grading",
            "breadth",
            "mechanisms",
            "minatar",
        ],
        tyro.conf.Positional,
    ]
    """cartpole: our PPO (preset cartpole, dropout off) vs stable-baselines3 PPO, time-to-solve CartPole-v1.
    lang: our GRPO vs TRL's GRPOTrainer on lang:reverse from the same SFT reference, time to mean reward 0.9.
    sweep: a 10-run sweep with 2 workers vs 1. report: the report of a 100-run sweep. population: a 16-seed
    population vs 16 runs one at a time, seeds per CPU-second and final returns; a 16-seed Acrobot population vs
    one SB3 run; the update's GFLOP/s against plain torch.baddbmm and torch.matmul. grpo-lambda, flatness: the two
    studies of the README (GRPO-lambda's length penalty and switch; the variance-flatness relation), written to
    --out. grading: a class of made-up hw1 submissions (correct, wrong, broken, hostile) graded with --workers
    grading processes; the time, and whether every verdict is the one it must be. breadth: dropout off against the
    three modes at p 0.1 and 0.3 on five tasks (30 planned contrasts); mechanisms: the arms that test what decides the
    sign (the critic-only arm on every task; smaller steps, policy noise, a narrower network, rollout-eval and
    consistent on Acrobot and CartPole; 35 planned contrasts). minatar: PPO with the
    MinAtar paper's network on --games, dropout off, rollout-eval, naive and consistent (p = 0.1, policy and value)
    and D-PPO sample dropout, each seed of --seeds (populations, --workers at a time). The studies resume where an
    interrupted run stopped (same --out)."""
    seeds: tuple[int, ...] | None = None
    """Seeds; each system runs once per seed, alternating (the studies: each arm once per seed). None: 0-4;
    breadth and mechanisms: the seeds per group that give 80% power for |g| 0.8 at Holm's first level (printed);
    minatar: 0-9."""
    out: str | None = None
    """grpo-lambda, flatness, breadth, mechanisms, minatar: the directory for their tables and figures (breadth,
    mechanisms and minatar: also their runs; the same --out resumes). None: bench-<target>-<time>."""
    tasks: tuple[str, ...] | None = None
    """breadth, mechanisms: only these of the study's tasks (gymnasium ids, e.g. Acrobot-v1), or tasks of your own (any
    Gymnasium id, module:Env-v0 for an env your module registers; defaults, --max-steps steps, 100000 without; the
    study then plans only the tasks given). None: all of the study's."""
    fast: bool = False
    """breadth, mechanisms, minatar: a smoke test of the plumbing (breadth and mechanisms: two seeds and a twentieth
    of each budget; minatar: two seeds and two short updates per run, also with SANDBOX_FAST=1). Its numbers mean
    nothing."""
    max_steps: int | None = None
    """Step budget per run (env steps; tokens for lang); a run that does not solve counts as unsolved.
    None: 100000 for cartpole, 300000 for lang, 400000 for minatar. breadth, mechanisms: the budget of your own
    tasks (--tasks)."""
    games: tuple[str, ...] = ("breakout", "space_invaders")
    """minatar: the games (asterix, breakout, freeway, seaquest, space_invaders)."""
    json: str | None = None
    """Also write the figures to this JSON file."""
    submissions: int = 150
    """grading: how many made-up submissions."""
    workers: int = 2
    """grading: grading processes side by side. breadth, mechanisms, minatar: runs (populations) side by side."""
    replicate: bool = False
    """breadth, mechanisms, minatar: also run every group on a second, disjoint set of seeds (as many, after the
    largest) and report, cell by cell, which verdicts replicated."""
    report_only: bool = False
    """breadth, mechanisms: run nothing; rewrite the report from --out's finals.csv (a committed study re-read with
    the current statistics)."""
    where: Annotated[Backend, tyro.conf.OmitArgPrefixes] = dataclasses.field(default_factory=Backend)
    """breadth, mechanisms, minatar: where the runs train, here or on a Ray cluster (docs/guide/cluster.md; on a
    cluster, --workers is its CPUs, which minatar sizes its populations for)."""
    quiet: bool = False
    """No progress bar."""


def parse_bench(args: list[str]) -> BenchArgs:
    return _parse(BenchArgs, args, "sandbox bench")


def cmd_bench(args: list[str]) -> int:
    a = parse_bench(args)
    studies = ("breadth", "mechanisms")
    if a.fast and a.target not in (*studies, "minatar"):
        raise ConfigError("fast", f"only for bench breadth, mechanisms and minatar, not {a.target}")
    if a.seeds is None and a.target not in studies:  # breadth, mechanisms: their seeds for 80% power
        a.seeds = tuple(range(10)) if a.target == "minatar" else (0, 1, 2, 3, 4)
    if a.seeds is not None and not a.seeds:
        raise ConfigError("seeds", "needs at least one seed")
    if a.tasks is not None and a.target not in studies:
        raise ConfigError("tasks", f"only for bench breadth and mechanisms, not {a.target}")
    custom = []
    if a.tasks is not None:
        from .analysis.breadth import TASKS
        from .envs.gym_tasks import check_env

        custom = [t for t in a.tasks if t not in TASKS]
        for task in custom:  # a task of your own: any Gymnasium id that builds here (module:Env-v0 for yours)
            try:
                check_env(task)
            except ConfigError as err:
                raise ConfigError(
                    "tasks",
                    f"{task!r} is not a task of the {a.target} study ({', '.join(TASKS)}) nor an env that "
                    f"builds here ({str(err).removeprefix('--env: ')})",
                ) from None
    if a.max_steps is not None and a.max_steps <= 0:
        raise ConfigError("max_steps", f"must be a positive integer, got {a.max_steps}")
    if a.max_steps is not None and a.target not in ("cartpole", "lang", "minatar") and not custom:
        raise ConfigError(
            "max_steps", f"only for bench cartpole, lang and minatar, and a study's tasks of your own, not {a.target}"
        )
    if a.replicate and a.target not in (*studies, "minatar"):
        raise ConfigError("replicate", f"only for bench breadth, mechanisms and minatar, not {a.target}")
    if a.report_only and (a.target not in studies or a.out is None):
        raise ConfigError("report_only", "only for bench breadth and mechanisms, with the --out holding finals.csv")
    if a.report_only and not (Path(a.out) / "finals.csv").is_file():
        raise ConfigError("report_only", f"{a.out} holds no finals.csv")
    if a.workers < 1:
        raise ConfigError("workers", "must be at least 1")
    if a.target == "grading" and a.submissions < 1:
        raise ConfigError("submissions", "must be at least 1")
    if a.out is not None and a.target not in ("grpo-lambda", "flatness", "minatar", *studies):
        raise ConfigError(
            "out", f"only for the studies (grpo-lambda, flatness, breadth, mechanisms, minatar), not {a.target}"
        )
    if a.games != BenchArgs.games and a.target != "minatar":
        raise ConfigError("games", f"only for bench minatar, not {a.target}")
    if a.target == "minatar":
        unknown = [g for g in a.games if g not in MINATAR_GAMES]
        if unknown or not a.games:
            raise ConfigError(
                "games", f"unknown MinAtar game {unknown[0] if unknown else ''!r}; one of: {', '.join(MINATAR_GAMES)}"
            )
    a.where.check()
    if a.where != Backend() and a.target not in (*studies, "minatar"):
        raise ConfigError("backend", f"only for bench breadth, mechanisms and minatar, not {a.target}")
    if a.json:
        parent = Path(a.json).resolve().parent
        if not parent.is_dir():
            raise ConfigError("json", f"directory {parent} does not exist")
    from . import bench

    if a.target == "cartpole":
        result = bench.bench_cartpole(a.seeds, a.max_steps or 100_000, quiet=a.quiet)
    elif a.target == "lang":
        result = bench.bench_lang(a.seeds, a.max_steps or 300_000, quiet=a.quiet)
    elif a.target == "sweep":
        result = bench.bench_sweep(quiet=a.quiet)
    elif a.target == "report":
        result = bench.bench_report(quiet=a.quiet)
    elif a.target == "population":
        result = bench.bench_population(quiet=a.quiet)
    elif a.target == "grading":
        result = bench.bench_grading(a.submissions, a.workers, quiet=a.quiet)
    elif a.target == "minatar":
        steps = a.max_steps or bench.MINATAR_STEPS
        result = bench.bench_minatar(
            a.games, a.seeds, steps, a.workers, a.out, quiet=a.quiet, fast=a.fast, replicate=a.replicate, where=a.where
        )
    elif a.target in studies:
        out = a.out or f"bench-{a.target}-{time.strftime('%Y%m%d-%H%M%S')}"
        result = bench.bench_breadth(
            a.target,
            out,
            a.seeds,
            a.tasks,
            a.workers,
            a.fast,
            a.quiet,
            a.replicate,
            a.report_only,
            a.where,
            max_steps=a.max_steps,
        )
    else:
        out = a.out or f"bench-{a.target}-{time.strftime('%Y%m%d-%H%M%S')}"
        study = bench.bench_grpo_lambda if a.target == "grpo-lambda" else bench.bench_flatness
        result = study(a.seeds, out, quiet=a.quiet)
    if a.json:
        import json

        with open(a.json, "w") as f:
            json.dump(result, f, indent=2)
    return 0


# --- sandbox demo ------------------------------------------------------------------------------------------------


@dataclasses.dataclass
class DemoArgs:
    """The headline experiment in about 3 minutes on 2 cores: PPO on CartPole in the four dropout modes (p = 0.3,
    16 seeds each, trained as populations), GRPO on lang:reverse in the four modes (p = 0.1, beta 0.04, 10 seeds
    each), then the report (report.md with its figures) and its key table."""

    workers: int = 2
    """Jobs at a time (a run or a population; one process and one torch thread each)."""
    out: str | None = None
    """Directory for the demo (default runs/demo-<time>: a new one each time, nothing is overwritten)."""
    fast: bool = False
    """A smoke test of the plumbing: two seeds and a tenth of the steps (the numbers mean little)."""
    quiet: bool = False
    """No progress bar, no table."""


def parse_demo(args: list[str]) -> DemoArgs:
    return _parse(DemoArgs, args, "sandbox demo")


def cmd_demo(args: list[str]) -> int:
    a = parse_demo(args)
    if a.workers < 1:
        raise ConfigError("workers", f"must be a positive integer, got {a.workers}")
    from .analysis.demo import run_demo

    run_demo(a.workers, a.out, a.quiet, a.fast)
    return 0


# --- sandbox doctor -----------------------------------------------------------------------------------------------


@dataclasses.dataclass
class DoctorArgs:
    """Is this machine ready for the course? One line per check, OK or what to do; exit code 1 if any failed."""

    lock: str | None = None
    """The lock to compare the versions with (default: requirements.lock of the checkout sandbox runs from)."""


def parse_doctor(args: list[str]) -> DoctorArgs:
    return _parse(DoctorArgs, args, "sandbox doctor")


def cmd_doctor(args: list[str]) -> int:
    a = parse_doctor(args)
    from .doctor import doctor

    return doctor(a.lock)


# --- sandbox pretrain ---------------------------------------------------------------------------------------------


@dataclasses.dataclass
class PretrainArgs:
    """Supervised pretraining of a language task's reference model on its synthetic corpus, cached on disk
    ($SANDBOX_CACHE, default ~/.cache/dropout-rl-sandbox). Training runs pretrain by themselves when needed."""

    env: str
    """The language task: lang:digit, lang:positive, lang:reverse, lang:sort, lang:add or lang:length."""
    sft_steps: int = 600
    """Supervised steps (batch 64)."""
    sparse: bool = False
    """lang:reverse and lang:sort with the exact-match reward (the reference itself is the same)."""
    partial_credit: bool = False
    """lang:add with partial credit."""
    force: bool = False
    """Pretrain again even if a cached model exists."""
    quiet: bool = False
    """No progress bar."""


def parse_pretrain(args: list[str]) -> PretrainArgs:
    return _parse(PretrainArgs, args, "sandbox pretrain")


def cmd_pretrain(args: list[str]) -> int:
    a = parse_pretrain(args)
    cfg = Config(env=a.env, algo="grpo", sft_steps=a.sft_steps, sparse=a.sparse, partial_credit=a.partial_credit)
    if not cfg.is_lang:
        raise ConfigError("env", f"pretraining is for the language tasks (lang:NAME), not {a.env!r}")
    validate(cfg)
    check(cfg)
    import numpy as np
    import torch

    torch.set_num_threads(1)
    from .envs.lang_tasks import completion_tokens, decode, make_task
    from .models.gpt import sample
    from .runs.pretrain import PretrainConfig, load_reference

    task = make_task(cfg.task_name, sparse=a.sparse, partial_credit=a.partial_credit)
    model, stats = load_reference(task, PretrainConfig(steps=a.sft_steps), progress=not a.quiet, force=a.force)
    prompts, infos = task.sample(4, np.random.default_rng(1))
    torch.manual_seed(1)
    completions, _ = sample(model, torch.from_numpy(prompts), task.max_new_tokens)
    how = "loaded from the cache" if stats["from_cache"] else "pretrained and cached"
    print(f"{cfg.env}: reference {how}: {stats['cached']}")
    print(
        f"  supervised steps {stats['steps']}, {stats['seconds']:.1f} s of training, final loss "
        f"{stats['final_loss']:.3f}"
    )
    print(
        f"  reference mean reward {stats['reference_reward']:.3f} (task threshold {task.threshold}), "
        f"ends with <eos> {stats['reference_eos_rate']:.0%}"
    )
    for p, c, info in zip(prompts, completions.numpy(), infos):
        words = completion_tokens(c)
        print(f"  {decode(p):<28} -> {decode(words):<20} reward {task.reward(info, words):.2f}")
    return 0


# --- sandbox sweep / report -------------------------------------------------------------------------------------


@dataclasses.dataclass
class SweepArgs:
    """Run a grid of configs: SPEC.toml has a [base] table of config fields and a [grid] table mapping fields to
    lists of values. Finished runs are skipped when the same sweep runs again; unfinished ones are redone."""

    spec: Annotated[str, tyro.conf.Positional]
    """The sweep spec (TOML)."""
    out: str
    """Directory for the run directories (one per grid combination)."""
    workers: int | None = None
    """Runs at a time, one process and one torch thread each (default: the number of CPU cores)."""
    where: Annotated[Backend, tyro.conf.OmitArgPrefixes] = dataclasses.field(default_factory=Backend)
    """Where the runs train: here, or on a Ray cluster (docs/guide/cluster.md)."""
    report: bool = True
    """Write the report (sandbox report) when the sweep has finished."""
    population: str = "16"
    """Train the seeds of one config together, up to this many per population (several times more seeds per
    CPU-second; README, "Populations"), or off: every run on its own."""
    quiet: bool = False
    """No progress bar."""


def population_size(text: str) -> int:
    """``--population``: a positive integer, or off (0)."""
    if text == "off":
        return 0
    if not text.isdigit() or int(text) < 1:
        raise ConfigError("population", f"must be a positive integer or off, got {text!r}")
    return int(text)


def parse_sweep(args: list[str]) -> SweepArgs:
    return _parse(SweepArgs, args, "sandbox sweep")


def cmd_sweep(args: list[str]) -> int:
    a = parse_sweep(args)
    if a.workers is not None and a.workers < 1:
        raise ConfigError("workers", f"must be a positive integer, got {a.workers}")
    population = population_size(a.population)
    from .analysis.sweep import run_sweep

    w = a.where
    counts = run_sweep(a.spec, a.out, a.workers, w.backend, w.address, a.quiet, population, w.ray_token_file)
    if a.report:
        from .analysis.report import write_report

        write_report(a.out, quiet=a.quiet)
    return 0 if counts["failed"] == 0 else 1


@dataclasses.dataclass
class ReportArgs:
    """Statistics and figures of a sweep directory: report.md, report.csv, finals.csv, report.tex (its tables for a
    paper) and PNG figures, written into it (another baseline: into a folder of its own, see --out)."""

    sweep_dir: Annotated[str, tyro.conf.Positional]
    """The sweep's directory (runs are found in it and below it)."""
    baseline: str = "dropout_mode=off"
    """FIELD=VALUE: each group is compared with the group that has the same config but this value (a permutation
    test of the final means, Holm-corrected over the report; no verdict below 5 seeds per group). Several, comma
    separated, all apply: dropout_mode=off,sample_dropout=none compares sample dropout with plain PPO too."""
    out: str | None = None
    """The report's folder. None: the sweep's directory for the default baseline, SWEEP_DIR/report-FIELD_VALUE for any
    other (a report against another baseline never overwrites this one); a folder holding a report against another
    baseline is refused."""
    quiet: bool = False
    """Do not print the key table (where the report went is still printed)."""


def parse_report(args: list[str]) -> ReportArgs:
    return _parse(ReportArgs, args, "sandbox report")


def cmd_report(args: list[str]) -> int:
    a = parse_report(args)
    if "=" not in a.baseline:
        raise ConfigError("baseline", f"must be FIELD=VALUE, e.g. dropout_mode=off, got {a.baseline!r}")
    from .analysis.report import write_report

    write_report(a.sweep_dir, a.baseline, quiet=a.quiet, out=a.out)
    return 0


# --- sandbox grade -----------------------------------------------------------------------------------------------


def parse_grade(args: list[str]):
    from .grade.command import parse

    return parse(args, _parse)


def cmd_grade(args: list[str]) -> int:
    from .grade.command import run

    return run(args, _parse)


PARSERS = {
    "train": parse_train,
    "eval": parse_eval,
    "sweep": parse_sweep,
    "report": parse_report,
    "pretrain": parse_pretrain,
    "bench": parse_bench,
    "demo": parse_demo,
    "grade": parse_grade,
    "doctor": parse_doctor,
}


def parse_command(argv: Sequence[str]) -> tuple[str, object]:
    """Parse a command line without running it: ``(command, its parsed arguments)``. Raises :class:`UsageError` or
    :class:`~sandbox.config.ConfigError` (one line), as the command itself would."""
    if not argv or argv[0] not in PARSERS:
        raise UsageError(f"unknown command {argv[0] if argv else ''!r}; one of: {', '.join(PARSERS)}")
    return argv[0], PARSERS[argv[0]](list(argv[1:]))


COMMANDS = {
    "train": cmd_train,
    "eval": cmd_eval,
    "sweep": cmd_sweep,
    "report": cmd_report,
    "pretrain": cmd_pretrain,
    "bench": cmd_bench,
    "demo": cmd_demo,
    "grade": cmd_grade,
    "doctor": cmd_doctor,
}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE, end="")
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"sandbox: error: unknown command {command!r}; one of: {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    try:
        return COMMANDS[command](rest)
    except (UsageError, ConfigError) as err:
        print(f"sandbox {command}: error: {err}", file=sys.stderr)
        return 2
    except NonFiniteLossError as err:
        print(f"sandbox {command}: stopped: {err}. Every row up to the last update was kept.", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"sandbox {command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
