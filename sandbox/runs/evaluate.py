"""``sandbox eval RUN_DIR``: what a saved policy does, in numbers and in pictures.

Gym policies play ``episodes`` episodes of their run's env (with its ``--env-params``) and report the mean and
standard deviation of the return; ``gif`` writes one episode as an animated GIF from the env's ``rgb_array``
rendering (pygame draws the classic-control envs; Pillow, which matplotlib already needs, writes the file).
Language policies complete ``episodes`` prompts of their task and print a few completions with their rewards.

Dropout: ``dropout="eval"`` (the default) evaluates the network without dropout, as a deployed policy would run.
``dropout="as-run"`` samples as the run's rollouts did: dropout on in modes naive and consistent (fresh masks per
step, which is what consistent dropout draws at rollout too), off in modes off and rollout-eval.
"""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")  # pygame greets on stdout when imported
for _driver in ("SDL_VIDEODRIVER", "SDL_AUDIODRIVER"):  # rgb_array frames need no window and no sound
    os.environ.setdefault(_driver, "dummy")

import numpy as np
import torch

from ..config import Config, ConfigError
from ..dropout_modes import MODES
from ..models.spec import build_agent, build_gpt, check_gym_policy
from .policy_file import load
from .rundir import find_policy_file


def evaluate(
    path: str | os.PathLike,
    episodes: int = 20,
    deterministic: bool = False,
    dropout: str = "eval",
    seed: int = 0,
    gif: str | os.PathLike | None = None,
    gif_max_frames: int = 500,
    show: int = 5,
    quiet: bool = False,
    env_params: dict[str, float] | None = None,
) -> dict:
    """Evaluate the policy of a run directory (its ``policy.pt``) or of a policy/checkpoint file, on its run's env
    (``env_params``, if given, replace the run's: how does the policy do on another variant?).

    Returns ``{"env", "env_params", "episodes", "returns", "lengths", "mean", "std", "gif"}`` (language tasks:
    ``returns`` are the completions' rewards, and ``"samples"`` lists ``(prompt, completion, reward)``). Prints a
    summary unless ``quiet``.
    """
    if not (isinstance(episodes, int) and episodes >= 1):
        raise ConfigError("episodes", f"must be a positive integer, got {episodes!r}")
    if dropout not in ("eval", "as-run"):
        raise ConfigError("dropout", f"unknown value {dropout!r}; one of: eval, as-run")
    if gif is not None:
        gif = Path(gif)
        if gif.suffix.lower() != ".gif":
            raise ConfigError("gif", f"must name a .gif file, got {str(gif)!r}")
        if not gif.resolve().parent.is_dir():
            raise ConfigError("gif", f"directory {gif.resolve().parent} does not exist")
    if not (isinstance(gif_max_frames, int) and gif_max_frames >= 1):
        raise ConfigError("gif_max_frames", f"must be a positive integer, got {gif_max_frames!r}")
    file = find_policy_file(path, "run_dir")
    b = load(file, "run_dir")
    cfg = Config.from_dict(b["config"])
    noisy = dropout == "as-run" and MODES[cfg.dropout_mode].rollout_train and b["dropout_p"] > 0
    torch.manual_seed(seed)
    if b["network"]["type"] == "gpt":
        if gif is not None:
            raise ConfigError("gif", "language tasks have no pictures; their completions are printed instead")
        if env_params:
            raise ConfigError("env_params", "only for Gym envs (the language tasks have no physical parameters)")
        result = _evaluate_lang(b, cfg, episodes, deterministic, noisy, seed, show)
    else:
        params = b["network"]["env_params"] if env_params is None else env_params
        result = _evaluate_gym(b, file, episodes, deterministic, noisy, seed, gif, gif_max_frames, params)
    if not quiet:
        lang = b["network"]["type"] == "gpt"
        how = (
            {
                (False, False): "sampled actions",
                (False, True): "most likely actions",
                (True, False): "sampled completions",
                (True, True): "greedy completions",
            }[lang, deterministic]
        ) + (f", dropout p = {b['dropout_p']:g} as at rollout" if noisy else ", no dropout (eval mode)")
        unit = "reward" if lang else "return"
        print(
            f"{file}: {cfg.algo} policy after {b['env_steps']:,} steps ({b['update']} updates) on {cfg.env}"
            f"{_params(cfg.env_params)}"
            + (
                f", evaluated on {cfg.env}{_params(result['env_params'])}"
                if result.get("env_params", cfg.env_params) != cfg.env_params
                else ""
            )
        )
        print(
            f"{episodes} {'prompts' if unit == 'reward' else 'episodes'}, {how}: {unit} {result['mean']:.3f} "
            f"± {result['std']:.3f} (std; min {min(result['returns']):.3f}, max {max(result['returns']):.3f})"
        )
        for prompt, completion, reward in result.get("samples", [])[:show]:
            print(f"  {prompt:<28} -> {completion:<20} reward {reward:.2f}")
        if result.get("gif"):
            print(
                f"gif: {result['gif']} ({result['gif_frames']} frames of episode 1, return {result['returns'][0]:.1f})"
            )
    return result


def _params(env_params: dict[str, float]) -> str:
    return f" ({', '.join(f'{k}={v:g}' for k, v in env_params.items())})" if env_params else ""


def _evaluate_gym(
    b: dict,
    file: Path,
    episodes: int,
    deterministic: bool,
    noisy: bool,
    seed: int,
    gif: Path | None,
    gif_max_frames: int,
    env_params: dict[str, float],
) -> dict:
    import gymnasium as gym

    from ..envs.gym_tasks import make_env

    net = b["network"]
    try:
        env = make_env(net["env"], env_params, render_mode="rgb_array" if gif is not None else None)
    except gym.error.DependencyNotInstalled as err:
        raise ConfigError("gif", f"rendering {net['env']} needs pygame: {str(err).splitlines()[0]}") from None
    check_gym_policy(b, file, "run_dir", net["env"], env.observation_space.shape[0], env.action_space)
    agent = build_agent(b, with_critic=False).train(noisy)
    box = isinstance(env.action_space, gym.spaces.Box)
    returns, lengths, frames = [], [], []
    obs, _ = env.reset(seed=seed)
    try:
        for episode in range(episodes):
            if episode > 0:
                obs, _ = env.reset()
            total, steps, done = 0.0, 0, False
            while not done:
                if gif is not None and episode == 0 and len(frames) < gif_max_frames:
                    frames.append(env.render())
                o = torch.as_tensor(obs, dtype=torch.float32)[None]
                action = agent.best_action(o) if deterministic else agent.act(o)[0]
                a = action[0].numpy()
                if box:
                    a = np.clip(a, env.action_space.low, env.action_space.high)
                obs, reward, terminated, truncated, _ = env.step(a if box else int(a))
                total, steps, done = total + float(reward), steps + 1, terminated or truncated
            if gif is not None and episode == 0 and len(frames) < gif_max_frames:
                frames.append(env.render())  # the last state
            returns.append(total)
            lengths.append(steps)
        fps = env.metadata.get("render_fps") or 30
    finally:
        env.close()
    result = {
        "env": net["env"],
        "env_params": dict(env_params),
        "episodes": episodes,
        "returns": returns,
        "lengths": lengths,
        "mean": float(np.mean(returns)),
        "std": float(np.std(returns)),
        "gif": None,
    }
    if gif is not None:
        write_gif(frames, gif, fps)
        result.update(gif=str(gif), gif_frames=len(frames))
    return result


def write_gif(frames: list[np.ndarray], path: Path, fps: float, max_width: int = 360) -> None:
    """RGB frames ``(H, W, 3)`` to an animated GIF that loops, scaled down to at most ``max_width`` pixels."""
    from PIL import Image

    images = [Image.fromarray(f) for f in frames]
    if images and images[0].width > max_width:
        size = (max_width, round(images[0].height * max_width / images[0].width))
        images = [im.resize(size, Image.Resampling.BILINEAR) for im in images]
    tmp = path.with_name(f".{path.name}.tmp")
    images[0].save(tmp, format="GIF", save_all=True, append_images=images[1:], duration=round(1000 / fps), loop=0)
    os.replace(tmp, path)


def _evaluate_lang(b: dict, cfg: Config, episodes: int, deterministic: bool, noisy: bool, seed: int, show: int) -> dict:
    from ..envs.lang_tasks import completion_tokens, decode, make_task
    from ..models.gpt import sample

    task = make_task(cfg.task_name, sparse=cfg.sparse, partial_credit=cfg.partial_credit)
    model = build_gpt(b).train(noisy)
    prompts, infos = task.sample(episodes, np.random.default_rng(seed))
    completions, _ = sample(
        model, torch.from_numpy(prompts), task.max_new_tokens, 0.0 if deterministic else cfg.temperature
    )
    rewards = task.rewards(infos, completions.numpy()).astype(float)
    samples = [
        (decode(p), decode(completion_tokens(c)), float(r))
        for p, c, r in zip(prompts[:show], completions.numpy()[:show], rewards[:show])
    ]
    lengths = [len(completion_tokens(c)) for c in completions.numpy()]
    return {
        "env": cfg.env,
        "episodes": episodes,
        "returns": rewards.tolist(),
        "lengths": lengths,
        "mean": float(rewards.mean()),
        "std": float(rewards.std()),
        "gif": None,
        "samples": samples,
    }
