"""A tiny GPT-2: causal transformer with GPT-2's dropout, masks that can be handed in, and KV-cached sampling.

GPT-2's three dropouts: on the embeddings (token + position), on the attention probabilities, and on the residual
branches (after the attention projection and after the MLP), all by the model's one
:class:`~sandbox.dropout.MaskedDropout` (through the ``Maths`` seam). Like :class:`sandbox.models.mlp.DropoutMLP`, each
draws fresh masks in ``train()`` mode, none in ``eval()`` mode, or uses the :class:`SeqMasks` it is given.
``consistent`` dropout draws one ``SeqMasks`` for every position of every sequence before sampling; the sampler (one
position at a time, with a KV cache) and the update (all positions at once) index the same tensors, so both see the
same network.

Multi-sample dropout (``samples = K > 1``): the last block's MLP residual dropout draws K masks, giving K final
hidden states and K outputs of the shared head; ``average="logits"`` averages them, ``"loss"`` keeps them apart for
the update (``all_samples=True`` returns them first-dimension-first, ``(K, B, t, V)``) and samples with the first.
It sits after the last attention, so the KV cache is unaffected.

The layout matches Hugging Face's ``GPT2LMHeadModel`` (pre-LayerNorm blocks, learned positions, GELU MLP, tied
input/output embeddings), so :func:`to_hf_gpt2_state_dict` can hand the same weights to TRL.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..dropout import MaskedDropout
from ..envs.lang_tasks import EOS, PAD
from ..maths import Maths
from .mlp import sample_categorical


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    vocab_size: int
    max_len: int
    d_model: int = 64
    n_heads: int = 4
    n_layers: int = 2
    dropout: float = 0.1


@dataclasses.dataclass
class SeqMasks:
    """Dropout masks for every position: ``emb (B, T, d)``, per layer ``attn (B, H, T, T)`` (query row t = the
    mask of position t's attention), ``resid_attn (B, T, d)`` and ``resid_mlp (B, T, d)`` (the last layer's is
    ``(B, K, T, d)`` with multi-sample dropout)."""

    emb: Tensor
    attn: list[Tensor]
    resid_attn: list[Tensor]
    resid_mlp: list[Tensor]

    def index(self, idx) -> "SeqMasks":
        """The masks of the sequences ``idx`` (a batch index)."""
        return SeqMasks(
            self.emb[idx],
            [a[idx] for a in self.attn],
            [r[idx] for r in self.resid_attn],
            [r[idx] for r in self.resid_mlp],
        )


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        d = cfg.d_model
        self.n_heads = cfg.n_heads
        self.ln_1 = nn.LayerNorm(d)
        self.c_attn = nn.Linear(d, 3 * d)
        self.c_proj = nn.Linear(d, d)
        self.ln_2 = nn.LayerNorm(d)
        self.c_fc = nn.Linear(d, 4 * d)
        self.mlp_proj = nn.Linear(4 * d, d)

    def forward(self, x: Tensor, start: int, past: tuple[Tensor, Tensor] | None, drop: "_Dropper", layer: int):
        """``x (B, t, d)`` holds positions ``start .. start + t - 1``; ``past`` their predecessors' keys/values."""
        B, t, d = x.shape
        H = self.n_heads
        q, k, v = self.c_attn(self.ln_1(x)).split(d, dim=2)
        q, k, v = (z.view(B, t, H, d // H).transpose(1, 2) for z in (q, k, v))
        if past is not None:
            k, v = torch.cat([past[0], k], dim=2), torch.cat([past[1], v], dim=2)
        end = start + t
        scores = (q @ k.transpose(-2, -1)) / math.sqrt(d // H)
        causal = torch.ones(t, end, dtype=torch.bool).tril(diagonal=start)
        probs = torch.softmax(scores.masked_fill(~causal, float("-inf")), dim=-1)
        probs = drop.attn(probs, layer, start, end)
        y = (probs @ v).transpose(1, 2).reshape(B, t, d)
        x = x + drop.resid(self.c_proj(y), "resid_attn", layer, start, end)
        mlp = self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x)), approximate="tanh"))
        return drop.residual_mlp(x, mlp, layer, start, end), (k, v)


class TinyGPT(nn.Module):
    """``forward(tokens, masks=None, past=None, start=0) -> (logits, hidden, present)``.

    ``tokens (B, t)`` are positions ``start .. start + t - 1``; ``past`` is the KV cache of the earlier positions
    (from a previous call's ``present``). ``value_head`` (for PPO) is a linear layer on the final hidden states,
    created with ``with_value_head=True``; the reference model never has one.

    The weights start from GPT-2's initialisation (normal, std 0.02; the residual projections scaled by
    1/sqrt(2 * n_layers)), or from ``start_from``, another tiny GPT of the same shape (the RL policy starts from its
    pretrained reference): then nothing is drawn for them, torch's random stream is left as it was, and the value
    head, if any, starts at zero (the critic predicts 0 until it learns). The zeroed head is built as any
    ``nn.Linear`` is, which draws its default initialisation from torch's global generator first: every language
    PPO run has drawn those numbers before sampling, and draws them still. ``dropout`` is the dropout probability
    (default ``cfg.dropout``); ``maths`` the seam the dropout layer draws, chooses and applies masks with (a learner's
    versions can stand in: homework 5); ``samples`` and ``average``: multi-sample dropout (module docstring).
    """

    def __init__(
        self,
        cfg: ModelConfig,
        with_value_head: bool = False,
        maths: Maths | None = None,
        samples: int = 1,
        average: str = "loss",
        start_from: "TinyGPT | None" = None,
        dropout: float | None = None,
    ):
        super().__init__()
        self.cfg = cfg
        self.samples, self.average = samples, average
        self.dropout = MaskedDropout(cfg.dropout if dropout is None else dropout, maths or Maths())
        with torch.random.fork_rng(devices=[]) if start_from is not None else contextlib.nullcontext():
            self.wte = nn.Embedding(cfg.vocab_size, cfg.d_model)
            self.wpe = nn.Embedding(cfg.max_len, cfg.d_model)
            self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
            self.ln_f = nn.LayerNorm(cfg.d_model)
        self.value_head = nn.Linear(cfg.d_model, 1) if with_value_head else None
        if start_from is not None:
            trunk = {k: v for k, v in start_from.state_dict().items() if not k.startswith("value_head.")}
            self.load_state_dict(trunk, strict=self.value_head is None)  # every weight but the value head's
            if self.value_head is not None:
                nn.init.zeros_(self.value_head.weight)
                nn.init.zeros_(self.value_head.bias)
            return
        self.apply(self._init)
        for block in self.blocks:  # GPT-2: residual projections scaled by 1/sqrt(2 * n_layers)
            for proj in (block.c_proj, block.mlp_proj):
                nn.init.normal_(proj.weight, std=0.02 / math.sqrt(2 * cfg.n_layers))

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, std=0.02)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, std=0.02)

    @property
    def p(self) -> float:
        """The dropout probability of every dropout place."""
        return self.dropout.p

    @property
    def dropout_p(self) -> float:
        return self.dropout.p

    def set_dropout(self, p: float) -> None:
        """Set p on every dropout layer (a dropout schedule calls this before each update)."""
        self.dropout.p = p

    def sample_masks(self, batch: int, length: int | None = None) -> SeqMasks:
        """Masks for ``batch`` whole sequences of ``length`` positions (default: ``max_len``), drawn by the dropout
        layer (the seam's ``dropout_mask``)."""
        T = length or self.cfg.max_len
        d, H, L = self.cfg.d_model, self.cfg.n_heads, self.cfg.n_layers
        f = self.dropout.draw
        K = self.samples
        resid_mlp = [f((batch, T, d) if i < L - 1 or K == 1 else (batch, K, T, d)) for i in range(L)]
        return SeqMasks(
            f((batch, T, d)),
            [f((batch, H, T, T)) for _ in range(L)],
            [f((batch, T, d)) for _ in range(L)],
            resid_mlp,
        )

    def forward(
        self,
        tokens: Tensor,
        masks: SeqMasks | None = None,
        past: list | None = None,
        start: int = 0,
        all_samples: bool = False,
    ):
        drop = _Dropper(self, masks)
        B, t = tokens.shape
        pos = torch.arange(start, start + t)
        x = drop.resid(self.wte(tokens) + self.wpe(pos), "emb", None, start, start + t)
        present = []
        for i, block in enumerate(self.blocks):
            x, kv = block(x, start, past[i] if past is not None else None, drop, i)
            present.append(kv)
        h = self.ln_f(x)
        logits = F.linear(h, self.wte.weight)
        if logits.dim() == 4:  # multi-sample dropout: (B, K, t, V)
            if self.average == "logits":
                logits, h = logits.mean(dim=1), h.mean(dim=1)
            elif all_samples:
                logits, h = logits.transpose(0, 1), h.mean(dim=1)
            else:
                logits, h = logits[:, 0], h[:, 0]
        return logits, h, present

    def value(self, hidden: Tensor) -> Tensor:
        return self.value_head(hidden).squeeze(-1)


class _Dropper:
    """One forward pass's dropout at each place, by the model's :class:`~sandbox.dropout.MaskedDropout` (the seam's
    ``layer_mask`` and ``apply_dropout``): the given masks (the positions ``start:end`` of them), fresh ones (train
    mode, p > 0), or none. Its own piece: a place's stored mask is a slice of the whole sequence's, and multi-sample
    dropout's masks broadcast against the activations."""

    def __init__(self, model: TinyGPT, masks: SeqMasks | None):
        self.masks, self.dropout = masks, model.dropout
        self.samples, self.layers = model.samples, model.cfg.n_layers

    def _drop(self, x: Tensor, stored: Tensor | None, shape: tuple[int, ...]) -> Tensor:
        return self.dropout.apply_mask(x, self.dropout.choose(stored, shape))

    def resid(self, x: Tensor, kind: str, layer: int | None, start: int, end: int) -> Tensor:
        stored = None
        if self.masks is not None:
            stored = (self.masks.emb if kind == "emb" else getattr(self.masks, kind)[layer])[:, start:end]
        return self._drop(x, stored, x.shape)

    def residual_mlp(self, x: Tensor, mlp: Tensor, layer: int, start: int, end: int) -> Tensor:
        """``x + dropout(mlp)``; on the last layer with multi-sample dropout, K copies ``(B, K, t, d)``."""
        multi = layer == self.layers - 1 and self.samples > 1
        if not multi or (self.masks is None and not self.dropout.fresh):
            return x + self.resid(mlp, "resid_mlp", layer, start, end)
        stored = self.masks.resid_mlp[layer][:, :, start:end] if self.masks is not None else None
        return x[:, None] + self._drop(mlp[:, None], stored, (mlp.shape[0], self.samples, *mlp.shape[1:]))

    def attn(self, probs: Tensor, layer: int, start: int, end: int) -> Tensor:
        stored = self.masks.attn[layer][:, :, start:end, :end] if self.masks is not None else None
        return self._drop(probs, stored, probs.shape)


@torch.no_grad()
def sample(
    model: TinyGPT, prompts: Tensor, max_new_tokens: int, temperature: float = 1.0, masks: SeqMasks | None = None
) -> tuple[Tensor, Tensor]:
    """Sample completions for ``prompts (B, P)`` with a KV cache: ``(completions (B, n), logp (B, n))``.

    ``logp`` is the log-probability of each sampled token under the temperature-scaled distribution it was drawn
    from, from the same forward pass. After a sequence emits ``<eos>`` it is padded with ``<pad>`` (logp 0).
    The model's train/eval mode decides the dropout, or ``masks`` when given. ``temperature=0`` decodes greedily
    (the most likely token; its logp is then that of the untempered distribution).
    """
    B, P = prompts.shape
    logits, _, past = model(prompts, masks, None, 0)
    nxt = logits[:, -1]
    tokens = torch.full((B, max_new_tokens), PAD, dtype=torch.long)
    logps = torch.zeros(B, max_new_tokens)
    done = torch.zeros(B, dtype=torch.bool)
    for i in range(max_new_tokens):
        logp_all = F.log_softmax(nxt / temperature if temperature > 0 else nxt, dim=-1)
        tok = sample_categorical(logp_all) if temperature > 0 else logp_all.argmax(-1)
        lp = logp_all.gather(1, tok[:, None]).squeeze(1)
        tokens[:, i] = torch.where(done, PAD, tok)
        logps[:, i] = torch.where(done, 0.0, lp)
        done = done | (tok == EOS)
        if bool(done.all()) or i == max_new_tokens - 1:
            break
        logits, _, past = model(tokens[:, i : i + 1], masks, past, P + i)
        nxt = logits[:, -1]
    return tokens, logps


def to_hf_gpt2_state_dict(model: TinyGPT) -> dict[str, Tensor]:
    """The weights under Hugging Face ``GPT2LMHeadModel`` names (its Conv1D stores ``(in, out)``)."""
    sd = {
        "transformer.wte.weight": model.wte.weight,
        "transformer.wpe.weight": model.wpe.weight,
        "transformer.ln_f.weight": model.ln_f.weight,
        "transformer.ln_f.bias": model.ln_f.bias,
        "lm_head.weight": model.wte.weight,
    }
    for i, b in enumerate(model.blocks):
        p = f"transformer.h.{i}."
        sd.update(
            {
                p + "ln_1.weight": b.ln_1.weight,
                p + "ln_1.bias": b.ln_1.bias,
                p + "ln_2.weight": b.ln_2.weight,
                p + "ln_2.bias": b.ln_2.bias,
                p + "attn.c_attn.weight": b.c_attn.weight.t(),
                p + "attn.c_attn.bias": b.c_attn.bias,
                p + "attn.c_proj.weight": b.c_proj.weight.t(),
                p + "attn.c_proj.bias": b.c_proj.bias,
                p + "mlp.c_fc.weight": b.c_fc.weight.t(),
                p + "mlp.c_fc.bias": b.c_fc.bias,
                p + "mlp.c_proj.weight": b.mlp_proj.weight.t(),
                p + "mlp.c_proj.bias": b.mlp_proj.bias,
            }
        )
    return {k: v.detach().clone().contiguous() for k, v in sd.items()}
