"""The tasks: Gymnasium environments, vectorised and checked (``gym_tasks``), and the language tasks the tiny GPT is
fine-tuned on (``lang_tasks``: prompts, answers, rewards, the vocabulary)."""
