"""TRL's side of ``sandbox bench lang``: its GRPOTrainer on lang:reverse with our SFT reference as a
GPT2LMHeadModel and our settings (:data:`sandbox.bench.lang_vs_trl.LANG_SETTINGS`)."""

from __future__ import annotations

import time

from .lang_vs_trl import LANG_SETTINGS, LANG_THRESHOLD


def _trl_reverse(seed: int, max_steps: int) -> dict:
    """TRL's GRPOTrainer on the same task, model (our SFT reference, converted to GPT2LMHeadModel), group size,
    prompts per step, learning rate, beta and gradient clip, dropout off (disable_dropout), one torch thread."""
    import logging
    import os
    import tempfile
    import warnings

    import numpy as np
    import torch

    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    logging.disable(logging.WARNING)
    from datasets import Dataset
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from ..envs.lang_tasks import BOS, EOS, PAD, TOKEN, VOCAB, make_task
    from ..models.gpt import to_hf_gpt2_state_dict
    from ..runs.pretrain import load_reference

    task = make_task("reverse")
    ours, ref_stats = load_reference(task)
    c = ours.cfg
    hf = GPT2LMHeadModel(
        GPT2Config(
            vocab_size=c.vocab_size,
            n_positions=c.max_len,
            n_embd=c.d_model,
            n_layer=c.n_layers,
            n_head=c.n_heads,
            resid_pdrop=c.dropout,
            embd_pdrop=c.dropout,
            attn_pdrop=c.dropout,
            layer_norm_epsilon=1e-5,
            activation_function="gelu_new",
            tie_word_embeddings=True,
            bos_token_id=BOS,
            eos_token_id=EOS,
            pad_token_id=PAD,
        )
    )
    hf.load_state_dict(to_hf_gpt2_state_dict(ours))
    tok = Tokenizer(models.WordLevel(vocab=TOKEN, unk_token="<pad>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>", unk_token="<pad>"
    )
    s = LANG_SETTINGS
    steps = max_steps // (s["prompts"] * s["group_size"] * 5) + 1  # ~5 tokens per completion
    rng = np.random.default_rng(seed)
    prompts, targets = task.sample(s["prompts"] * steps, rng)
    # the prompt is written out with its <pad>s: all prompts have the same length, and the model sees the format
    # (and the positions) it was pretrained on
    data = Dataset.from_list(
        [{"prompt": " ".join(VOCAB[t] for t in p), "target": tg} for p, tg in zip(prompts, targets)]
    )

    def reward(prompts, completions, target, **_):
        out = []
        for text, tg in zip(completions, target):
            words = [TOKEN[w] for w in text.split() if w in TOKEN and w not in ("<pad>", "<eos>", "<bos>")]
            out.append(task.reward(tg, words))
        return out

    class Clock(TrainerCallback):
        t0 = solved_s = solved_step = None
        tokens = 0.0

        def on_train_begin(self, args, state, control, **kw):
            self.t0 = time.perf_counter()

        def on_log(self, args, state, control, logs=None, **kw):
            logs = logs or {}
            self.tokens += logs.get("completions/mean_length", 0.0) * s["prompts"] * s["group_size"]
            if self.solved_s is None and logs.get("reward", 0.0) >= LANG_THRESHOLD:
                self.solved_s, self.solved_step = time.perf_counter() - self.t0, state.global_step
                control.should_training_stop = True

    with tempfile.TemporaryDirectory() as tmp:
        args = GRPOConfig(
            output_dir=tmp,
            per_device_train_batch_size=s["prompts"] * s["group_size"],
            num_generations=s["group_size"],
            max_completion_length=task.max_new_tokens,
            learning_rate=s["learning_rate"],
            lr_scheduler_type="constant",
            beta=s["beta"],
            max_grad_norm=s["max_grad_norm"],
            loss_type="grpo",
            scale_rewards="group",
            disable_dropout=True,
            temperature=1.0,
            max_steps=steps,
            logging_steps=1,
            report_to="none",
            save_strategy="no",
            use_cpu=True,
            seed=seed,
            disable_tqdm=True,
            dataloader_num_workers=0,
        )
        clock = Clock()
        trainer = GRPOTrainer(
            model=hf, reward_funcs=reward, args=args, train_dataset=data, processing_class=tokenizer, callbacks=[clock]
        )
        t0 = time.perf_counter()
        trainer.train()
        total = time.perf_counter() - t0
    return {
        "solved_s": clock.solved_s,
        "solved_updates": clock.solved_step,
        "tokens": clock.tokens,
        "total_s": total,
        "tokens_per_s": clock.tokens / total,
        "reference_reward": ref_stats["reference_reward"],
    }
