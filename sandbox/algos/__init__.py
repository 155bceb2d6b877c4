"""The trainers, each reading top to bottom (``ppo``, ``grpo``, ``lang_ppo``, ``sb3``; ``population`` trains many
seeds of PPO at once), and what they share: the run's bookkeeping (``run``), the rollouts (``rollout``,
``lang_rollout``), the groups of GRPO and language PPO (``groups``), the minibatch loop (``learner``), the pieces of
the objectives (``objective``), and the diagnostics (``diagnostics``, ``flatness``)."""
