"""BLIP's BERT text encoder (`models/med.py` BertModel) as `mode='text'` runs it, plus its tokenizer.

Parameter names follow the official module (`embeddings.word_embeddings`, `embeddings.position_embeddings`,
`embeddings.LayerNorm`, `encoder.layer.{i}.attention.self.{query,key,value}`, `...attention.output.{dense,
LayerNorm}`, `...intermediate.dense`, `...output.{dense,LayerNorm}`). What `mode='text'` does and we match:
word + absolute position embeddings (med's BertEmbeddings has no token-type table), LayerNorm eps 1e-12,
exact GELU, additive attention mask `(1 - m) * -10000`, post-norm layers, no pooler. The checkpoint's
`crossattention.*` layers only run in `mode='multimodal'`, so this module has no parameters for them (the
consistency loader drops those keys by name).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

LN_EPS = 1e-12
MAX_TEXT_LENGTH = 30  # the official inference: tokenizer(..., padding='max_length', truncation=True, max_length=30)
BUNDLED_VOCAB = Path(__file__).resolve().parent / "assets" / "bert-base-uncased-vocab.txt"
VOCAB_SIZE = 30524  # bert-base-uncased 30522 + [DEC] + [ENC]


class BertEmbeddings(nn.Module):
    def __init__(self, vocab_size: int, hidden: int, max_positions: int) -> None:
        super().__init__()
        self.word_embeddings = nn.Embedding(vocab_size, hidden)
        self.position_embeddings = nn.Embedding(max_positions, hidden)
        self.LayerNorm = nn.LayerNorm(hidden, eps=LN_EPS)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        x = self.word_embeddings(input_ids) + self.position_embeddings(positions)[None]
        return self.LayerNorm(x)


class BertSelfAttention(nn.Module):
    def __init__(self, hidden: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.query = nn.Linear(hidden, hidden)
        self.key = nn.Linear(hidden, hidden)
        self.value = nn.Linear(hidden, hidden)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        return x.view(b, n, self.num_heads, c // self.num_heads).transpose(1, 2)

    def forward(self, x: torch.Tensor, additive_mask: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        out = F.scaled_dot_product_attention(
            self._heads(self.query(x)), self._heads(self.key(x)), self._heads(self.value(x)), attn_mask=additive_mask
        )
        return out.transpose(1, 2).reshape(b, n, c)


class BertSelfOutput(nn.Module):
    """dense, then LayerNorm(residual + ·): post-norm, as BERT."""

    def __init__(self, hidden: int, inner: int) -> None:
        super().__init__()
        self.dense = nn.Linear(inner, hidden)
        self.LayerNorm = nn.LayerNorm(hidden, eps=LN_EPS)

    def forward(self, x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.dense(x) + residual)


class BertAttention(nn.Module):
    def __init__(self, hidden: int, num_heads: int) -> None:
        super().__init__()
        self.self = BertSelfAttention(hidden, num_heads)
        self.output = BertSelfOutput(hidden, hidden)

    def forward(self, x: torch.Tensor, additive_mask: torch.Tensor) -> torch.Tensor:
        return self.output(self.self(x, additive_mask), x)


class BertIntermediate(nn.Module):
    def __init__(self, hidden: int, inner: int) -> None:
        super().__init__()
        self.dense = nn.Linear(hidden, inner)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(self.dense(x))  # config hidden_act "gelu" = exact GELU


class BertLayer(nn.Module):
    def __init__(self, hidden: int, num_heads: int, inner: int) -> None:
        super().__init__()
        self.attention = BertAttention(hidden, num_heads)
        self.intermediate = BertIntermediate(hidden, inner)
        self.output = BertSelfOutput(hidden, inner)

    def forward(self, x: torch.Tensor, additive_mask: torch.Tensor) -> torch.Tensor:
        x = self.attention(x, additive_mask)
        return self.output(self.intermediate(x), x)


class BertEncoder(nn.Module):
    def __init__(self, hidden: int, num_heads: int, inner: int, depth: int) -> None:
        super().__init__()
        self.layer = nn.ModuleList([BertLayer(hidden, num_heads, inner) for _ in range(depth)])

    def forward(self, x: torch.Tensor, additive_mask: torch.Tensor) -> torch.Tensor:
        for layer in self.layer:
            x = layer(x, additive_mask)
        return x


class BertTextEncoder(nn.Module):
    """bert-base text tower: ids [B,L] + mask [B,L] → last hidden state [B,L,768]."""

    def __init__(
        self,
        vocab_size: int = VOCAB_SIZE,
        hidden: int = 768,
        num_heads: int = 12,
        inner: int = 3072,
        depth: int = 12,
        max_positions: int = 512,
    ) -> None:
        super().__init__()
        self.embeddings = BertEmbeddings(vocab_size, hidden, max_positions)
        self.encoder = BertEncoder(hidden, num_heads, inner, depth)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        x = self.embeddings(input_ids)
        # med.BertModel.get_extended_attention_mask: (1 - m) * -10000 in the model dtype, broadcast over
        # heads and query positions.
        additive = (1.0 - attention_mask[:, None, None, :].to(x.dtype)) * -10000.0
        return self.encoder(x, additive)


def load_tokenizer(vocab_file: Path | None = None):  # -> transformers.BertTokenizer
    """The official tokenizer: slow lower-casing BertTokenizer + bos `[DEC]` (30522) + `[ENC]` (30523).

    The official code loads bert-base-uncased from the hub; here the vocab is bundled (see
    assets/README.md), and a `vocab.txt` the user puts beside the checkpoint takes precedence.
    """
    from transformers import BertTokenizer

    vocab = Path(vocab_file) if vocab_file is not None else BUNDLED_VOCAB
    if not vocab.is_file():
        raise FileNotFoundError(f"BERT vocabulary not found: {vocab}")
    tok = BertTokenizer(str(vocab), do_lower_case=True)
    tok.add_special_tokens({"bos_token": "[DEC]"})
    tok.add_special_tokens({"additional_special_tokens": ["[ENC]"]})
    if len(tok) != VOCAB_SIZE or tok.bos_token_id != 30522 or tok.additional_special_tokens_ids != [30523]:
        raise ValueError(
            f"vocabulary {vocab} gives {len(tok)} tokens ([DEC]={tok.bos_token_id}, "
            f"[ENC]={tok.additional_special_tokens_ids}); the BLIP text encoder needs bert-base-uncased's "
            f"30,522 entries plus [DEC]=30522 and [ENC]=30523 ({VOCAB_SIZE} in all)"
        )
    return tok


def tokenize(tokenizer, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """ids and mask [N,30]: `[CLS] … [SEP]` padded with 0, long prompts cut to 28 wordpieces."""
    enc = tokenizer(
        prompts, padding="max_length", truncation=True, max_length=MAX_TEXT_LENGTH, return_tensors="pt"
    )
    return enc["input_ids"], enc["attention_mask"]
