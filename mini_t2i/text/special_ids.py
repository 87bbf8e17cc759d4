"""The special tokens of every text tokenizer here, and their fixed ids.

The ids are the same for every tokenizer (they are the first four entries of each
vocabulary), so the models that read text ids (the transformer, the reranker, the
diffusion baseline, the Flax model) use these constants instead of a tokenizer:

    [PAD] 0   padding to text_len; 0 so that zero-filled buffers are padding
    [UNK] 1   never emitted by the byte-level BPE; transformers' tokenizers expect one
    [BOS] 2   first id of every caption
    [EOS] 3   after the caption's last token; CLIP's text tower pools there

A leaf module: no torch at import.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

PAD, UNK, BOS, EOS = "[PAD]", "[UNK]", "[BOS]", "[EOS]"
SPECIAL_TOKENS = (PAD, UNK, BOS, EOS)  # ids 0, 1, 2, 3, in this order
PAD_ID, UNK_ID, BOS_ID, EOS_ID = range(len(SPECIAL_TOKENS))


def empty_caption(text_len: int) -> "torch.Tensor":
    """The ids of the empty caption, (text_len,): [BOS] [EOS] [PAD]... What caption dropout
    trains on and what classifier-free guidance conditions its unconditional rows on."""
    import torch

    ids = torch.full((text_len,), PAD_ID, dtype=torch.long)
    ids[0], ids[1] = BOS_ID, EOS_ID
    return ids
