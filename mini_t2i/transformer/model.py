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

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

if TYPE_CHECKING:
    from transformers import LlamaForCausalLM

# name: (layers, hidden size, heads). The MLP is SwiGLU at 8/3 x hidden, rounded to 32.
PRESETS: dict[str, tuple[int, int, int]] = {
    "tiny": (2, 64, 2),  # tests and smoke runs
    "mini": (4, 256, 4),  # Shapes World on a 2-core CPU in an hour (configs/transformer_shapes64.yaml)
    "small": (8, 512, 8),
    "base": (12, 768, 12),
    "large": (24, 1024, 16),
}
VOCAB_MULTIPLE = 64  # embedding rows are padded to this; matmuls like round sizes
# The Shapes World layout of the shipped tokenizers (text_shapes, vq_shapes64): parameter
# tables and benchmarks without a trained model use it.
SHAPES_LAYOUT = dict(text_vocab_size=436, text_len=24, codebook_size=1024, image_grid=16)


@dataclass
class TransformerConfig:
    preset: str = "mini"  # tiny | mini | small | base | large (see PRESETS)
    num_layers: int = 0  # 0 = the preset's; set to override it
    hidden_size: int = 0
    num_heads: int = 0
    dropout: float = 0.0  # attention dropout; 0 for the short runs here
    rope_theta: float = 10000.0
    # The token layout. 0 = filled in from the text tokenizer and the token shards
    # when training starts; a saved model always has them set.
    text_vocab_size: int = 0
    text_len: int = 0
    codebook_size: int = 0
    image_grid: int = 0  # the image is image_grid x image_grid tokens

    def __post_init__(self) -> None:
        if self.preset not in PRESETS:
            raise ValueError(f"unknown transformer preset {self.preset!r}; choose one of {', '.join(PRESETS)}")
        layers, hidden, heads = self.shape
        if hidden % heads:
            raise ValueError(f"hidden_size={hidden} is not divisible by num_heads={heads}")

    @property
    def shape(self) -> tuple[int, int, int]:
        """(layers, hidden size, heads) after overrides."""
        layers, hidden, heads = PRESETS[self.preset]
        return self.num_layers or layers, self.hidden_size or hidden, self.num_heads or heads

    @property
    def image_offset(self) -> int:
        """Id of image token 0: image ids follow the text ids."""
        return self.text_vocab_size

    @property
    def image_len(self) -> int:
        return self.image_grid * self.image_grid

    @property
    def sequence_length(self) -> int:
        return self.text_len + self.image_len

    @property
    def vocab_size(self) -> int:
        used = self.text_vocab_size + self.codebook_size
        return -(-used // VOCAB_MULTIPLE) * VOCAB_MULTIPLE

    def check_layout(self) -> None:
        missing = [n for n in ("text_vocab_size", "text_len", "codebook_size", "image_grid") if getattr(self, n) <= 0]
        if missing:
            raise ValueError(f"transformer layout not set: {', '.join(missing)}; they come from the text "
                             "tokenizer and the token shards (see mini_t2i.transformer.train)")

    def with_layout(self, text_vocab_size: int, text_len: int, codebook_size: int, image_grid: int) -> "TransformerConfig":
        return replace(self, text_vocab_size=text_vocab_size, text_len=text_len,
                       codebook_size=codebook_size, image_grid=image_grid)


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
        intermediate_size=int(hidden * 8 / 3) // 32 * 32,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        max_position_embeddings=cfg.sequence_length,
        rope_theta=cfg.rope_theta,
        attention_dropout=cfg.dropout,
        tie_word_embeddings=False,
        bos_token_id=2,
        eos_token_id=3,
        pad_token_id=0,
        mini_t2i=config_to_dict(cfg),
    )


def build_model(cfg: TransformerConfig, seed: int | None = None) -> "LlamaForCausalLM":
    """A freshly initialised model (fp32, SDPA attention). seed makes the weights reproducible."""
    from transformers import LlamaForCausalLM

    if seed is not None:
        torch.manual_seed(seed)
    config = llama_config(cfg)
    config._attn_implementation = "sdpa"
    return LlamaForCausalLM(config)


def parameter_count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def config_parameter_count(cfg: TransformerConfig) -> int:
    """Parameters of the model of cfg (its shape after overrides, its vocabulary), computed
    without building it. Sequence length does not change the count (RoPE has no weights)."""
    layers, hidden, _ = cfg.shape
    mlp = int(hidden * 8 / 3) // 32 * 32
    per_layer = 4 * hidden * hidden + 3 * hidden * mlp + 2 * hidden  # attention, SwiGLU, two RMSNorms
    return 2 * cfg.vocab_size * hidden + layers * per_layer + hidden  # embeddings, head, final norm


def preset_parameter_count(preset: str, text_vocab_size: int = SHAPES_LAYOUT["text_vocab_size"],
                           codebook_size: int = SHAPES_LAYOUT["codebook_size"]) -> int:
    """Parameters of a preset for a vocabulary (Shapes World's by default)."""
    return config_parameter_count(TransformerConfig(preset=preset, **{
        **SHAPES_LAYOUT, "text_vocab_size": text_vocab_size, "codebook_size": codebook_size}))


def empty_caption(text_len: int) -> torch.Tensor:
    """The token ids of the empty caption, (text_len,): what caption dropout trains on
    and what classifier-free guidance conditions its unconditional rows on."""
    from mini_t2i.text.tokenizer import TextTokenizer

    ids = torch.full((text_len,), TextTokenizer.pad_id, dtype=torch.long)
    ids[0], ids[1] = TextTokenizer.bos_id, TextTokenizer.eos_id
    return ids


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
        from mini_t2i.text.tokenizer import TextTokenizer

        text_part = logits[:, :cfg.text_len - 1, :cfg.text_vocab_size]  # predicts text ids 1..text_len-1
        targets = text_ids[:, 1:].masked_fill(text_ids[:, 1:] == TextTokenizer.pad_id, -100)
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


def load_transformer(path: str | Path, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32):
    """Load a saved model; returns (LlamaForCausalLM in eval mode, TransformerConfig).
    Weights stored in fp16 (the shipped models) are cast to `dtype`: fp32 on CPUs, which
    have no fast half-precision matmul. Refuses folders without safetensors weights
    (nothing is ever unpickled)."""
    from transformers import LlamaForCausalLM

    from mini_t2i.checkpoint import CheckpointError
    from mini_t2i.config import load_config

    path = Path(path)
    if not (path / "transformer.yaml").is_file() or not (path / "config.json").is_file():
        raise FileNotFoundError(f"{path} is not a saved transformer (no transformer.yaml / config.json); "
                                "train one with `mini-t2i train transformer`")
    if not (path / "model.safetensors").is_file():
        raise CheckpointError(f"{path} has no model.safetensors; only safetensors weights are loaded")
    cfg = load_config(TransformerConfig, path / "transformer.yaml")
    try:
        model = LlamaForCausalLM.from_pretrained(path, use_safetensors=True, attn_implementation="sdpa", dtype=dtype)
    except Exception as exc:  # transformers raises many kinds for a damaged folder
        raise CheckpointError(f"cannot load the transformer in {path}: {exc}") from exc
    if model.config.vocab_size != cfg.vocab_size:
        raise CheckpointError(f"{path}: config.json has vocab_size {model.config.vocab_size} but transformer.yaml "
                              f"implies {cfg.vocab_size}; the folder is inconsistent")
    return model.to(device).eval(), cfg


def describe_presets() -> str:
    """A table of the presets and their parameter counts (Shapes World layout)."""
    rows = ["| preset | layers | hidden | heads | parameters |", "|---|---|---|---|---|"]
    for name, (layers, hidden, heads) in PRESETS.items():
        rows.append(f"| {name} | {layers} | {hidden} | {heads} | {preset_parameter_count(name) / 1e6:.1f}M |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(describe_presets())
    print(json.dumps({n: preset_parameter_count(n) for n in PRESETS}))
