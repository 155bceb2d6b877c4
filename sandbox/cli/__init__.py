"""The ``sandbox`` command: ``train``, ``eval``, ``sweep``, ``report``, ``pretrain``, ``bench``, ``demo``, ``grade``,
``doctor``.

Each command is a function registered with :func:`command`, with how it reads its arguments: a dataclass, whose
fields are its flags and whose field docstrings are its ``--help`` (read by :func:`sandbox.cli.parsing.parse`), or a
function of the argument list. Every flag of ``sandbox train`` is a field of :class:`sandbox.config.Config`. Bad input
ends with one line on stderr naming the flag and what it allows, and exit code 2.
"""

from __future__ import annotations

import dataclasses
import sys
import time
import typing
from pathlib import Path
from typing import Annotated, Callable, Literal, Sequence

import tyro

from ..algos.learner import NonFiniteLossError
from ..analysis.cluster import Backend
from ..config import KIND_DEFAULTS, KINDS, PRESETS, RENAMED, SECTIONS, Config, ConfigError, applies, preset, validate
from ..runs.rundir import latest_checkpoint
from ..training import check, resume, train
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


COMMANDS: dict[str, tuple[Callable[[list[str]], object], Callable[[object], int]]] = {}
"""command -> (how it reads its argument list, what it does with what it read: the exit code)."""


def command(name: str, reads: type | Callable[[list[str]], object]):
    """Register the function below as ``sandbox NAME``. ``reads``: the dataclass of its arguments (read by
    :func:`sandbox.cli.parsing.parse`), or a function from the argument list to what the command gets."""
    read = (lambda args: parse(reads, args, f"sandbox {name}")) if isinstance(reads, type) else reads

    def register(run: Callable[[object], int]) -> Callable[[object], int]:
        COMMANDS[name] = (read, run)
        return run

    return register


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


@command("train", parse_train)
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


# --- sandbox eval -----------------------------------------------------------------------------------------------------


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


@command("eval", EvalArgs)
def cmd_eval(a: EvalArgs) -> int:
    if not (0 <= a.seed < 2**32):
        raise ConfigError("seed", f"must be an integer in [0, 2**32), got {a.seed}")
    from ..runs.evaluate import evaluate

    evaluate(a.run_dir, episodes=a.episodes, deterministic=a.deterministic, dropout=a.dropout, seed=a.seed, gif=a.gif,
             gif_max_frames=a.gif_max_frames, show=a.show, quiet=a.quiet, env_params=a.env_params)  # fmt: skip
    return 0


# --- sandbox sweep / report -------------------------------------------------------------------------------------------


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


@command("sweep", SweepArgs)
def cmd_sweep(a: SweepArgs) -> int:
    if a.workers is not None and a.workers < 1:
        raise ConfigError("workers", f"must be a positive integer, got {a.workers}")
    population = population_size(a.population)
    from ..analysis.sweep import run_sweep

    w = a.where
    counts = run_sweep(a.spec, a.out, a.workers, w.backend, w.address, a.quiet, population, w.ray_token_file)
    if a.report:
        from ..analysis.report import write_report

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


@command("report", ReportArgs)
def cmd_report(a: ReportArgs) -> int:
    if "=" not in a.baseline:
        raise ConfigError("baseline", f"must be FIELD=VALUE, e.g. dropout_mode=off, got {a.baseline!r}")
    from ..analysis.report import write_report

    write_report(a.sweep_dir, a.baseline, quiet=a.quiet, out=a.out)
    return 0


# --- sandbox pretrain -------------------------------------------------------------------------------------------------


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


@command("pretrain", PretrainArgs)
def cmd_pretrain(a: PretrainArgs) -> int:
    cfg = Config(env=a.env, algo="grpo", sft_steps=a.sft_steps, sparse=a.sparse, partial_credit=a.partial_credit)
    if not cfg.is_lang:
        raise ConfigError("env", f"pretraining is for the language tasks (lang:NAME), not {a.env!r}")
    validate(cfg)
    check(cfg)
    import torch

    from ..envs.lang_tasks import make_task
    from ..runs.pretrain import show_reference

    torch.set_num_threads(1)
    task = make_task(cfg.task_name, sparse=a.sparse, partial_credit=a.partial_credit)
    show_reference(task, cfg.env, a.sft_steps, progress=not a.quiet, force=a.force)
    return 0


# --- sandbox demo -----------------------------------------------------------------------------------------------------


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


@command("demo", DemoArgs)
def cmd_demo(a: DemoArgs) -> int:
    if a.workers < 1:
        raise ConfigError("workers", f"must be a positive integer, got {a.workers}")
    from ..analysis.demo import run_demo

    run_demo(a.workers, a.out, a.quiet, a.fast)
    return 0


# --- sandbox bench and sandbox grade: their arguments and checks live in their packages' command.py -------------------


def _bench_args(args: list[str]):
    from ..bench.command import parse as read

    return read(args, parse)


@command("bench", _bench_args)
def cmd_bench(a) -> int:
    from ..bench.command import run

    return run(a)


def _grade_args(args: list[str]):
    from ..grade.command import parse as read

    return read(args, parse)


@command("grade", _grade_args)
def cmd_grade(a) -> int:
    from ..grade.command import BundleArgs, bundle, grade

    return bundle(a) if isinstance(a, BundleArgs) else grade(a)


# --- sandbox doctor ---------------------------------------------------------------------------------------------------


@dataclasses.dataclass
class DoctorArgs:
    """Is this machine ready for the course? One line per check, OK or what to do; exit code 1 if any failed."""

    lock: str | None = None
    """The lock to compare the versions with (default: requirements.lock of the checkout sandbox runs from)."""


@command("doctor", DoctorArgs)
def cmd_doctor(a: DoctorArgs) -> int:
    from ..doctor import doctor

    return doctor(a.lock)


def parse_command(argv: Sequence[str]) -> tuple[str, object]:
    """Parse a command line without running it: ``(command, its parsed arguments)``. Raises :class:`UsageError` or
    :class:`~sandbox.config.ConfigError` (one line), as the command itself would."""
    if not argv or argv[0] not in COMMANDS:
        raise UsageError(f"unknown command {argv[0] if argv else ''!r}; one of: {', '.join(COMMANDS)}")
    return argv[0], COMMANDS[argv[0]][0](list(argv[1:]))


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE, end="")
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"sandbox: error: unknown command {name!r}; one of: {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    read, run = COMMANDS[name]
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
