"""The reranker's image-text matching head: the caption's tokens attend to the image's patches.

CLIP's score is the cosine of two pooled vectors, computed apart; it is known to lose what
needs both at once: which colour goes with which shape, left of or right of, how many
(NegCLIP, LABCLIP). ALBEF's and BLIP's fix is a matching head: a text encoder whose every
layer cross-attends from the caption's tokens to the image's patch features, pooled at the
first token, with a binary "is this its caption" logit, trained against the hardest
negatives. Here it is transformers' `BlipTextModel` (BERT layers with cross-attention, the
text encoder of BLIP's image-text matching model) over our tokenizer, reading the patch
states of the reranker's own CLIP vision tower:

    caption ids (B, text_len) -> BERT self-attention (bidirectional, PADs masked)
                                 + cross-attention to patches (B, 1 + P, d_vision) per layer
                              -> state at position 0 ([BOS]) -> Linear -> (B,) logit

Reranking reads the logit (`Reranker.score`); the cosine stays for retrieval over many
captions (`describe`), where running the head on every pair would cost too much.
"""

from __future__ import annotations

import torch

from mini_t2i.text.special_ids import BOS_ID, EOS_ID, PAD_ID


def matcher_config(text_vocab_size: int, text_len: int, layers: int, hidden: int, heads: int, vision_hidden: int):
    """The `BlipTextConfig` of the matching head. is_decoder=True is what makes BlipTextModel
    build its cross-attention layers; the forward pass asks for the bidirectional mask
    (is_decoder=False there), as BLIP's image-text matching does."""
    from transformers import BlipTextConfig

    config = BlipTextConfig(vocab_size=text_vocab_size, hidden_size=hidden, encoder_hidden_size=vision_hidden,
                            intermediate_size=4 * hidden, num_hidden_layers=layers, num_attention_heads=heads,
                            max_position_embeddings=text_len, pad_token_id=PAD_ID, bos_token_id=BOS_ID,
                            eos_token_id=EOS_ID, sep_token_id=EOS_ID, is_decoder=True, use_cache=False)
    return config


class ImageTextMatcher(torch.nn.Module):
    """forward(text_ids (B, L), patches (B, 1 + P, d_vision)) -> (B,) matching logits."""

    def __init__(self, config) -> None:
        super().__init__()
        from transformers import BlipTextModel

        self.encoder = BlipTextModel(config, add_pooling_layer=False)
        self.head = torch.nn.Linear(config.hidden_size, 1)
        torch.nn.init.normal_(self.head.weight, std=config.initializer_range)
        torch.nn.init.zeros_(self.head.bias)

    @torch.no_grad()
    def copy_text_embeddings(self, clip_embeddings) -> None:
        """Start the head's token and position tables from a trained CLIP text tower's
        (`CLIPTextEmbeddings`, same vocabulary, width and length), so a new head begins
        from words that already mean something."""
        ours = self.encoder.embeddings
        ours.word_embeddings.weight.copy_(clip_embeddings.token_embedding.weight)
        ours.position_embeddings.weight.copy_(clip_embeddings.position_embedding.weight)

    def forward(self, text_ids: torch.Tensor, patches: torch.Tensor) -> torch.Tensor:
        mask = (text_ids != PAD_ID).long()  # (B, L): the caption's PADs take no part
        image_mask = torch.ones(patches.shape[:2], dtype=torch.long, device=patches.device)
        states = self.encoder(input_ids=text_ids, attention_mask=mask, encoder_hidden_states=patches,
                              encoder_attention_mask=image_mask, is_decoder=False).last_hidden_state  # (B, L, d)
        return self.head(states[:, 0]).squeeze(-1)  # (B,)
