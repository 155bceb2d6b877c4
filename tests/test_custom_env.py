"""An environment of the user's own, from every door: gymnasium's ``module:Env-v0`` and ``--env-module`` through
``sandbox train`` and ``sandbox eval``, a sweep spec trained as a population in a worker process, the studies' task
list, and the one-line refusals.

Cost: about 20 s on 2 busy cores (a tiny corridor env; runs of 512 to 1,024 steps; one 4-run sweep in a worker, with
its report).
"""

import json
import sys
import textwrap

import gymnasium as gym
import pytest

import sandbox
from sandbox.cli import main

CORRIDOR = '''
"""A corridor of 6 cells: start at the left end, reach the right one (actions: 0 left, 1 right)."""
import gymnasium as gym
import numpy as np


class Corridor(gym.Env):
    def __init__(self, length: int = 6):
        self.length = length
        self.observation_space = gym.spaces.Box(0.0, 1.0, shape=(length,), dtype=np.float32)
        self.action_space = gym.spaces.Discrete(2)

    def _obs(self):
        obs = np.zeros(self.length, dtype=np.float32)
        obs[self.pos] = 1.0
        return obs

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.pos = 0
        return self._obs(), {}

    def step(self, action):
        self.pos = int(np.clip(self.pos + (1 if action == 1 else -1), 0, self.length - 1))
        done = self.pos == self.length - 1
        return self._obs(), (1.0 if done else -0.01), done, False, {}


gym.register(id="TestCorridor-v0", entry_point=Corridor, max_episode_steps=30, reward_threshold=0.9)
'''


@pytest.fixture
def corridor(tmp_path, monkeypatch):
    """``test_corridor.py`` in a fresh working directory that is not on ``sys.path``: found as the ``sandbox`` command
    finds a user's module (from where it runs). ``sys.path`` and the module are restored afterwards."""
    (tmp_path / "test_corridor.py").write_text(CORRIDOR)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    monkeypatch.delitem(sys.modules, "test_corridor", raising=False)
    monkeypatch.delitem(gym.envs.registry, "TestCorridor-v0", raising=False)  # registered by importing the module
    return tmp_path


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_train_and_eval_a_module_env_from_the_command_line(capsys, corridor):
    code, out, err = run(capsys, "train", "--env", "test_corridor:TestCorridor-v0", "--total-steps", "1024",
                         "--out", "a", "--quiet")  # fmt: skip
    assert code == 0, err
    code, _, err = run(capsys, "train", "--env-module", "test_corridor", "--env", "TestCorridor-v0",
                       "--total-steps", "512", "--out", "b", "--quiet")  # fmt: skip
    assert code == 0, err
    config = json.loads((corridor / "b" / "config.json").read_text())
    assert config["env"] == "test_corridor:TestCorridor-v0" and config["env_module"] is None  # one form recorded
    summary = json.loads((corridor / "a" / "summary.json").read_text())
    assert summary["reward_threshold"] == 0.9 and summary["env_steps"] == 1024  # the registered spec is read
    code, out, err = run(capsys, "eval", "a", "--episodes", "2")
    assert code == 0 and "on test_corridor:TestCorridor-v0" in out, err
    code, _, err = run(capsys, "eval", "a", "--episodes", "1", "--gif", "x.gif")
    assert code == 2 and "--gif: test_corridor:TestCorridor-v0 does not render" in err and err.count("\n") == 1


@pytest.mark.parametrize(
    "args, message",
    [
        (["--env", "test_corridor:TestCorridor-v9"], "test_corridor was imported but 'TestCorridor-v9' is not "
         "registered: it registers TestCorridor-v0"),
        (["--env", "no_such_module:Corridor-v0"], "--env: cannot import no_such_module"),
        (["--env-module", "test_corridor", "--env", "test_corridor:TestCorridor-v0"], "names its module already"),
        (["--env-module", "9lives", "--env", "TestCorridor-v0"], "--env-module: must be a module name"),
        (["--env", "TestCorridor-v0"], "unknown environment id"),  # not imported: its module must be named
    ],
)  # fmt: skip
def test_bad_env_modules_in_one_line(capsys, corridor, args, message):
    code, _, err = run(capsys, "train", *args, "--total-steps", "512", "--quiet")
    assert code == 2 and message in err and err.count("\n") == 1, err


def test_a_sweep_spec_names_a_module_env_and_trains_it_as_a_population(capsys, corridor):
    (corridor / "spec.toml").write_text(
        textwrap.dedent("""
        [base]
        env_module = "test_corridor"
        env = "TestCorridor-v0"
        total_steps = 512
        dropout = 0.1

        [grid]
        dropout_mode = ["off", "naive"]
        seed = [0, 1]
        """)
    )
    code, out, err = run(capsys, "sweep", "spec.toml", "--out", "sw", "--workers", "1", "--quiet")
    assert code == 0, err
    assert "report: sw/report.md" in out  # --quiet still says where the report went
    runs = sandbox.load("sw")
    assert len(runs) == 4 and set(runs["env"]) == {"test_corridor:TestCorridor-v0"}
    assert set(runs["population"]) == {2}  # each mode's two seeds trained together, in a worker process


def test_the_studies_take_a_task_of_your_own(capsys, corridor):
    from sandbox.analysis import breadth

    task = breadth.task_of("test_corridor:TestCorridor-v0", 4096)
    assert task.total_steps == 4096 and task.settings == {}
    assert breadth.study_tasks([task.env]) == [task.env]  # the study plans only the tasks it was given
    assert breadth.study_tasks(["Acrobot-v1"]) == list(breadth.TASKS)
    assert list(breadth.mechanisms(task)) == ["off", breadth.CRITIC, breadth.NAIVE]
    code, _, err = run(capsys, "bench", "mechanisms", "--tasks", "NoSuchEnv-v0", "--out", "m")
    assert code == 2 and "--tasks: 'NoSuchEnv-v0' is not a task of the mechanisms study" in err, err
    code, _, err = run(capsys, "bench", "breadth", "--max-steps", "5000", "--out", "m")
    assert code == 2 and "a study's tasks of your own" in err, err
