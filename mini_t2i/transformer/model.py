"""Stage 2: the decoder-only transformer that writes image tokens after text tokens.

The network is transformers' `LlamaForCausalLM` (RMSNorm, SwiGLU, RoPE, SDPA) with
one vocabulary, so a checkpoint loads with `AutoModelForCausalLM` and in serving
engines that speak Llama. What is ours is the layout of that vocabulary and of a
sequence, and the loss:

    ids:  [0, text_vocab)                      text tokens (PAD 0, UNK 1, BOS 2, EOS 3, BPE ...)
          [text_vocab, text_vocab + codebook)  image tokens (VQ code c -> text_vocab + c)
          [.., vocab_size)                     padding to a multiple of 64, never used
    seq:  [BOS caption EOS PAD ... PAD] (text_len) [c_0 c_1 ... c_{h*w-1}] (h*w, row-major)

Captions are padded to a fixed length and the pads are attended to, as in DALL-E 1:
every sequence has the same length and the same positions, so training and sampling
batch without attention masks. The last text position predicts the first image token.
The image loss is a softmax over the image part of the vocabulary only, which is also
all the sampler ever looks at, so a sampled token is always an image token.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from mini_t2i.text.special_ids import BOS_ID, EOS_ID, PAD_ID
from mini_t2i.transformer.blocks import block_llama_class, compute_block_loss
from mini_t2i.transformer.config import INIT_STD, RMS_NORM_EPS, TransformerConfig, mlp_width

if TYPE_CHECKING:
    from transformers import LlamaForCausalLM

def llama_config(cfg: TransformerConfig):
    """The `LlamaConfig` of cfg. Our layout rides along in its `mini_t2i` entry, so
    config.json alone says how to read the vocabulary."""
    from transformers import LlamaConfig

    from mini_t2i.config import config_to_dict

    cfg.check_layout()
    layers, hidden, heads = cfg.shape
    return LlamaConfig(
        vocab_size=cfg.vocab_size,
        hidden_size=hidden,
        intermediate_size=mlp_width(hidden),
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        max_position_embeddings=cfg.sequence_length,
        rope_theta=cfg.rope_theta,
        attention_dropout=cfg.dropout,
        rms_norm_eps=RMS_NORM_EPS,
        initializer_range=INIT_STD,
        tie_word_embeddings=False,
        bos_token_id=BOS_ID,
        eos_token_id=EOS_ID,
        pad_token_id=PAD_ID,
        mini_t2i=config_to_dict(cfg),
    )


def model_class(cfg: TransformerConfig):
    """transformers' LlamaForCausalLM; with image_positions="rowcol" its subclass that
    adds the row and column embeddings; with image_order="blocks" the block-factorized
    BlockLlama (blocks.py). Subclasses are built on first use: transformers imports slowly."""
    from transformers import LlamaForCausalLM

    if cfg.image_order == "blocks":
        return block_llama_class()
    if cfg.image_positions == "rope":
        return LlamaForCausalLM
    global _ROWCOL_CLASS
    if _ROWCOL_CLASS is None:
        _ROWCOL_CLASS = _rowcol_llama_class(LlamaForCausalLM)
    return _ROWCOL_CLASS


_ROWCOL_CLASS = None


def _rowcol_llama_class(base):
    class RowColLlamaForCausalLM(base):
        """LlamaForCausalLM + learned row and column embeddings (grid_size, d) each: the input
        at sequence position t predicts image token j = t - text_len + 1, so it gets
        rows[j // g] + cols[j % g] added to its token embedding (for 0 <= j < g*g; the caption
        before the last text position gets nothing). RoPE stays on the flat sequence."""

        def __init__(self, config):
            super().__init__(config)
            layout = config.mini_t2i
            self.grid_size, self.text_len = layout["grid_size"], layout["text_len"]
            self.image_rows = torch.nn.Embedding(self.grid_size, config.hidden_size)
            self.image_cols = torch.nn.Embedding(self.grid_size, config.hidden_size)
            for table in (self.image_rows, self.image_cols):  # as Llama initialises its embeddings
                torch.nn.init.normal_(table.weight, std=config.initializer_range)

        def position_embeds(self, start: int, length: int) -> torch.Tensor:
            """(length, d): what is added at sequence positions start .. start + length - 1."""
            return image_position_embeds(self.image_rows.weight, self.image_cols.weight, self.text_len, start, length)

        def forward(self, input_ids=None, inputs_embeds=None, **kwargs):
            if input_ids is not None:  # every caller here passes whole sequences from position 0
                inputs_embeds = self.model.embed_tokens(input_ids) + self.position_embeds(0, input_ids.shape[1])
            return super().forward(inputs_embeds=inputs_embeds, **kwargs)

    return RowColLlamaForCausalLM


def image_position_embeds(rows: torch.Tensor, cols: torch.Tensor, text_len: int, start: int, length: int) -> torch.Tensor:
    """rows, cols (g, d) -> (length, d): rows[j // g] + cols[j % g] for the image token
    j = t - text_len + 1 that sequence position t predicts, 0 where t predicts no image token."""
    g = rows.shape[0]
    j = torch.arange(start, start + length, device=rows.device) - (text_len - 1)  # (length,)
    inside = (j >= 0) & (j < g * g)
    jc = j.clamp(0, g * g - 1)
    return (rows[jc // g] + cols[jc % g]) * inside[:, None].to(rows.dtype)


def build_model(cfg: TransformerConfig, seed: int | None = None) -> "LlamaForCausalLM":
    """A freshly initialised model (fp32, SDPA attention). seed makes the weights reproducible."""
    if seed is not None:
        torch.manual_seed(seed)
    config = llama_config(cfg)
    config._attn_implementation = "sdpa"
    return model_class(cfg)(config)


def parameter_count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def sequence_ids(cfg: TransformerConfig, text_ids: torch.Tensor, image_tokens: torch.Tensor) -> torch.Tensor:
    """(B, text_len) text ids + (B, n) VQ codes -> (B, text_len + n) model ids."""
    return torch.cat([text_ids, image_tokens.long() + cfg.image_offset], dim=1)


def image_logits(cfg: TransformerConfig, logits: torch.Tensor) -> torch.Tensor:
    """(..., vocab) -> (..., codebook): the image part of the vocabulary, indexed by VQ code."""
    return logits[..., cfg.image_offset:cfg.image_offset + cfg.codebook_size]


def compute_loss(model, cfg: TransformerConfig, text_ids: torch.Tensor, image_tokens: torch.Tensor,
                 text_loss_weight: float = 0.0) -> tuple[torch.Tensor, dict[str, float]]:
    """The training loss of a batch: cross-entropy of the image tokens given the caption
    and the image tokens before them, plus text_loss_weight x that of the caption's
    tokens (DALL-E 1 used 1/8). text_ids (B, text_len), image_tokens (B, h*w) codes.
    Returns (loss, {"image_loss", "text_loss"}) ."""
    if cfg.image_order == "blocks":
        return compute_block_loss(model, cfg, text_ids, image_tokens, text_loss_weight)
    ids = sequence_ids(cfg, text_ids, image_tokens)  # (B, L)
    inputs = ids[:, :-1]  # (B, L-1): position i predicts token i+1
    n_image = image_tokens.shape[1]
    keep = inputs.shape[1] if text_loss_weight > 0 else n_image
    logits = model(input_ids=inputs, logits_to_keep=keep).logits.float()  # (B, keep, vocab)
    image_part = image_logits(cfg, logits[:, -n_image:])  # (B, h*w, codebook)
    image_loss = F.cross_entropy(image_part.reshape(-1, cfg.codebook_size), image_tokens.long().reshape(-1))
    metrics = {"image_loss": image_loss.item()}
    loss = image_loss
    if text_loss_weight > 0:
        text_part = logits[:, :cfg.text_len - 1, :cfg.text_vocab_size]  # predicts text ids 1..text_len-1
        targets = text_ids[:, 1:].masked_fill(text_ids[:, 1:] == PAD_ID, -100)
        text_loss = F.cross_entropy(text_part.reshape(-1, cfg.text_vocab_size), targets.reshape(-1))
        metrics["text_loss"] = text_loss.item()
        loss = loss + text_loss_weight * text_loss
    return loss, metrics


def save_transformer(model, cfg: TransformerConfig, path: str | Path, stage_config=None) -> Path:
    """Write model.safetensors + config.json (transformers' format, loadable with
    AutoModelForCausalLM) and transformer.yaml (our layout); plus train_config.yaml
    when the training config is given. Not atomic by itself: training writes into a
    temporary folder that write_checkpoint_dir renames."""
    from mini_t2i.config import save_config

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)  # safetensors by default in transformers 5
    save_config(cfg, path / "transformer.yaml")
    if stage_config is not None:
        save_config(stage_config, path / "train_config.yaml")
    return path


def transformer_folder_config(path: Path) -> TransformerConfig:
    """The TransformerConfig of a folder save_transformer wrote, after checking its files are
    there (safetensors weights only: nothing is ever unpickled)."""
    from mini_t2i.checkpoint import CheckpointError
    from mini_t2i.config import load_config

    if not (path / "transformer.yaml").is_file() or not (path / "config.json").is_file():
        raise FileNotFoundError(f"{path} is not a saved transformer (no transformer.yaml / config.json); "
                                "train one with `mini-t2i train transformer`")
    if not (path / "model.safetensors").is_file():
        raise CheckpointError(f"{path} has no model.safetensors; only safetensors weights are loaded")
    return load_config(TransformerConfig, path / "transformer.yaml")


def load_transformer(path: str | Path, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32):
    """Load a saved model; returns (LlamaForCausalLM in eval mode, TransformerConfig).
    Weights stored in fp16 (the shipped models) are cast to `dtype`: fp32 on CPUs, which
    have no fast half-precision matmul. Refuses folders without safetensors weights
    (nothing is ever unpickled)."""
    from mini_t2i.checkpoint import CheckpointError

    path = Path(path)
    cfg = transformer_folder_config(path)
    try:
        model = model_class(cfg).from_pretrained(path, use_safetensors=True, attn_implementation="sdpa", dtype=dtype)
    except Exception as exc:  # transformers raises many kinds for a damaged folder
        raise CheckpointError(f"cannot load the transformer in {path}: {exc}") from exc
    if model.config.vocab_size != cfg.vocab_size:
        raise CheckpointError(f"{path}: config.json has vocab_size {model.config.vocab_size} but transformer.yaml "
                              f"implies {cfg.vocab_size}; the folder is inconsistent")
    return model.to(device).eval(), cfg


def load_matching_transformer(path: str | Path, layout: TransformerConfig):
    """A saved transformer whose weights start a run (`init_from`), in train mode, with its
    own config (its preset wins); its layout must be `layout`'s (the tokenizers' and shards')."""
    model, cfg = load_transformer(path, device="cpu")
    if cfg.layout != layout.layout:
        raise ValueError(f"init_from={path} has layout (text vocab, text len, codes, grid) {cfg.layout}, but the "
                         f"tokenizer and token shards give {layout.layout}; pretokenize with that model's components")
    return model.train(), cfg
