"""Block-factorized autoregression: a main transformer over blocks, a depth one inside each.

The raster transformer (model.py) writes the h*w codes one by one, so its sequence is
text_len + h*w long. Here the grid is cut into k x k blocks (k = block_size, 2 for the
16 x 16 grid of shapes64: 64 blocks of 4 codes), and the work is split in two, as
RQ-Transformer splits space and depth and MEGABYTE global and local:

    main:  [caption (text_len)] [block 0] ... [block nb-2]      one position per block
           the input of a block is the sum of its k*k codes' embeddings, one table row per
           (place in the block, code); the output at the position before block j is the
           context h_j of block j (nb = (h/k) * (w/k) blocks, in row-major block order)
    depth: [h_j, e(c_j0), ..., e(c_j,k*k-2)] -> logits of c_j0, ..., c_j,k*k-1
           a small Llama over k*k positions, the same for every block (batched over all
           blocks in training), its own code table e and head

The factorisation is still exact: code i of block j is predicted from the caption, every
earlier block and the codes before it in block j. The main transformer reads
text_len + nb - 1 positions instead of text_len + h*w - 1 (87 against 279 for shapes64),
so a training step costs about 1.7x less at depth_layers=1, and sampling takes nb steps of
the main transformer and h*w steps of the small one.

The sequence order of the codes ("blocks": block by block, row-major inside a block) is
what the sampler walks; `sequence_order` maps it to the raster order the VQ decodes.
"""

from __future__ import annotations

from functools import lru_cache

import torch
import torch.nn.functional as F

from mini_t2i.text.special_ids import PAD_ID
from mini_t2i.transformer.config import TransformerConfig


@lru_cache(maxsize=16)
def _order(grid_size: int, block_size: int) -> tuple[int, ...]:
    g, k = grid_size, block_size
    raster = torch.arange(g * g).view(g // k, k, g // k, k)  # (block row, row in block, block col, col in block)
    return tuple(raster.permute(0, 2, 1, 3).reshape(-1).tolist())


def sequence_order(cfg: TransformerConfig) -> torch.Tensor:
    """(h*w,) long: the raster index of the code at each sequence position (arange for "raster")."""
    if cfg.image_order == "raster":
        return torch.arange(cfg.image_len)
    return torch.tensor(_order(cfg.grid_size, cfg.block_size))


def to_sequence_order(cfg: TransformerConfig, codes: torch.Tensor) -> torch.Tensor:
    """(B, h*w) codes in raster order -> the same codes in the model's sequence order."""
    return codes[:, sequence_order(cfg).to(codes.device)]


def to_raster_order(cfg: TransformerConfig, codes: torch.Tensor) -> torch.Tensor:
    """(B, h*w) codes in sequence order -> raster order (the inverse of to_sequence_order)."""
    raster = torch.empty_like(codes)
    raster[:, sequence_order(cfg).to(codes.device)] = codes
    return raster


def block_embeddings(embed: torch.Tensor, cfg: TransformerConfig, codes: torch.Tensor) -> torch.Tensor:
    """embed (vocab, d) the main table; codes (B, m, k*k) -> (B, m, d): per block the sum of the
    rows image_offset + i * codebook + c_i, i = the code's place in the block."""
    places = torch.arange(cfg.block_len, device=codes.device) * cfg.codebook_size  # (k*k,)
    return F.embedding(codes.long() + places + cfg.image_offset, embed).sum(dim=-2)


def caption_embeddings(embed: torch.Tensor, caption_proj: torch.Tensor | None, cfg: TransformerConfig,
                       text_ids: torch.Tensor) -> torch.Tensor:
    """text_ids (B, text_len) -> (B, text_len, d), the caption positions' inputs: rows of the main
    table `embed` (vocab, d), or with caption_encoder="minilm" the frozen MiniLM's features
    through caption_proj (d, 384) (text/minilm.py). The module's forward and the fast decoder
    both start here."""
    if cfg.caption_encoder == "minilm":
        from mini_t2i.text.minilm import caption_features

        return F.linear(caption_features(text_ids).to(caption_proj.dtype), caption_proj)
    return F.embedding(text_ids, embed, padding_idx=PAD_ID)  # PAD's row gets no gradient, as embed_tokens'


def block_llama_class():
    """The network: transformers' LlamaModel twice (built on first use: transformers imports
    slowly), saved and loaded with save_pretrained / from_pretrained like the raster model."""
    global _BLOCK_CLASS
    if _BLOCK_CLASS is None:
        _BLOCK_CLASS = _build_block_class()
    return _BLOCK_CLASS


_BLOCK_CLASS = None


def depth_config(config):
    """The depth transformer's LlamaConfig: the main one's width and heads, depth_layers
    layers, a vocabulary of the codebook (its embedding is the code table e), k*k positions,
    and no pad id: code 0 is a code like any other (a pad row would stay zero, untrained)."""
    layout = config.mini_t2i
    depth = config.__class__(**{**config.to_dict(), "num_hidden_layers": layout["depth_layers"],
                                "vocab_size": layout["codebook_size"], "pad_token_id": None,
                                "max_position_embeddings": layout["block_size"] ** 2})
    depth._attn_implementation = config._attn_implementation
    return depth


def _build_block_class():
    from transformers import LlamaModel, LlamaPreTrainedModel

    from mini_t2i.config import config_from_dict

    class BlockLlama(LlamaPreTrainedModel):
        """model (LlamaModel over caption + blocks), depth (LlamaModel over one block's codes),
        head (d -> codebook), and with caption_encoder="minilm" caption_proj (384 -> d). forward(text_ids (B, text_len), codes (B, h*w) in sequence order)
        -> (B, h*w, codebook) logits, position i predicting code i."""

        def __init__(self, config):
            super().__init__(config)
            self.layout = config_from_dict(TransformerConfig, config.mini_t2i)
            self.model = LlamaModel(config)
            self.depth = LlamaModel(depth_config(config))
            self.head = torch.nn.Linear(config.hidden_size, self.layout.codebook_size, bias=False)
            if self.layout.caption_encoder == "minilm":
                from mini_t2i.text.minilm import FEATURES

                self.caption_proj = torch.nn.Linear(FEATURES, config.hidden_size, bias=False)
            self.post_init()

        def forward(self, text_ids: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
            cfg = self.layout
            batch, k2 = text_ids.shape[0], cfg.block_len
            blocks = codes.view(batch, -1, k2)  # (B, nb, k*k)
            proj = self.caption_proj.weight if cfg.caption_encoder == "minilm" else None
            x = torch.cat([caption_embeddings(self.model.embed_tokens.weight, proj, cfg, text_ids),
                           block_embeddings(self.model.embed_tokens.weight, cfg, blocks[:, :-1])], dim=1)
            h = self.model(inputs_embeds=x, use_cache=False).last_hidden_state[:, cfg.text_len - 1:]  # (B, nb, d)
            inner = torch.cat([h[:, :, None], self.depth.embed_tokens(blocks[:, :, :-1])], dim=2)  # (B, nb, k*k, d)
            out = self.depth(inputs_embeds=inner.flatten(0, 1), use_cache=False).last_hidden_state  # (B*nb, k*k, d)
            return self.head(out).view(batch, -1, cfg.codebook_size)  # (B, h*w, codebook)

    return BlockLlama


def compute_block_loss(model, cfg: TransformerConfig, text_ids: torch.Tensor, image_tokens: torch.Tensor,
                       text_loss_weight: float = 0.0) -> tuple[torch.Tensor, dict[str, float]]:
    """model.compute_loss for image_order="blocks": the cross-entropy of the image tokens
    (B, h*w, raster order, as the shards hold them). The caption is not predicted here."""
    if text_loss_weight > 0:
        raise ValueError("text_loss_weight > 0 needs image_order=raster: the block model does not predict captions")
    codes = to_sequence_order(cfg, image_tokens.long())
    logits = model(text_ids, codes).float()  # (B, h*w, codebook)
    loss = F.cross_entropy(logits.reshape(-1, cfg.codebook_size), codes.reshape(-1))
    return loss, {"image_loss": loss.item()}
