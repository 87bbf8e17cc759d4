"""The transformer's configs and shape constants, apart from the network and the loop.

`TransformerConfig` is the network (a preset, overrides, the token layout);
`TransformerTrainConfig` a training run of it (PyTorch or JAX: the same YAML). The shape
constants here (presets, the SwiGLU width, the vocabulary padding, RMSNorm's epsilon, the
initialisation) are read by everything that builds or counts the network: the Llama config
(model.py), the fast decoder (decoder.py), the Flax model (transformer_jax/model.py) and
the parameter tables (the bench, the docs). No torch at import.

    python -m mini_t2i.transformer.config     # the presets' table with parameter counts
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from typing import ClassVar, Literal

from mini_t2i.training import RunConfig

# name: (layers, hidden size, heads). The MLP is SwiGLU at mlp_width(hidden).
PRESETS: dict[str, tuple[int, int, int]] = {
    "tiny": (2, 64, 2),  # tests and smoke runs
    "mini": (4, 256, 4),  # Shapes World on a 2-core CPU in an hour (configs/transformer_shapes64.yaml)
    "small": (8, 512, 8),
    "base": (12, 768, 12),
    "large": (24, 1024, 16),
}
VOCAB_MULTIPLE = 64  # embedding rows are padded to this; matmuls like round sizes
RMS_NORM_EPS = 1e-6  # LlamaConfig's default, which llama_config keeps
INIT_STD = 0.02  # LlamaConfig.initializer_range: normal(0, 0.02) for every matrix and embedding
# The Shapes World layout of the shipped tokenizers (text_shapes, vq_shapes64): parameter
# tables and benchmarks without a trained model use it.
# The fast decoder's weight formats (transformer/quantize.py; "fused": fp16 weights in one compiled
# call a forward, transformer/fused.py), and "auto", a pipeline setting resolved by
# quantize.auto_decode_weights before the decoder sees it. Here, torch-free, for the argument parsers.
DECODE_WEIGHTS = ("fp32", "fp16", "int8", "fused")
DECODE_WEIGHT_CHOICES = ("auto", *DECODE_WEIGHTS)
SHAPES_LAYOUT = dict(text_vocab_size=436, text_len=24, codebook_size=1024, grid_size=16)


def mlp_width(hidden: int) -> int:
    """SwiGLU's inner width: 8/3 x hidden (the parameter count of a 4x GELU MLP), rounded
    down to a multiple of 32 for round matmuls (Llama's rule with multiple_of=32)."""
    return int(hidden * 8 / 3) // 32 * 32


@dataclass
class TransformerConfig:
    # Saved folders from before the rename to grid_size (the VQ's name) still load.
    RENAMED_KEYS: ClassVar[dict[str, str]] = {"image_grid": "grid_size"}

    preset: str = "mini"  # tiny | mini | small | base | large (see PRESETS)
    num_layers: int = 0  # 0 = the preset's; set to override it
    hidden_size: int = 0
    num_heads: int = 0
    dropout: float = 0.0  # attention dropout; 0 for the short runs here
    rope_theta: float = 10000.0
    # Where image tokens learn where they are. "rope": RoPE over the flat sequence only (the
    # row must be inferred from position mod grid_size). "rowcol": also learned row and column
    # embeddings of the image position each input predicts, added to the input embeddings
    # (model.py); a bake-off variant (issue 18), not yet in the Flax model.
    image_positions: Literal["rope", "rowcol"] = "rope"
    # The order the codes are written in. "raster": one by one, row-major (model.py).
    # "blocks": block_size x block_size blocks, a main transformer over blocks and a small
    # depth transformer of depth_layers layers inside each (blocks.py); a bake-off variant
    # (issue 18), not yet in the Flax model.
    image_order: Literal["raster", "blocks"] = "raster"
    block_size: int = 2
    depth_layers: int = 1
    # What the caption positions read. "ids": the model's own embedding of the text tokenizer's
    # ids. "minilm": a frozen MiniLM's token features through a learned 384 -> d projection
    # (text/minilm.py; the text_tokenizer of the run is then "minilm"); image_order=blocks only.
    caption_encoder: Literal["ids", "minilm"] = "ids"
    # The token layout. 0 = filled in from the text tokenizer and the token shards
    # when training starts; a saved model always has them set.
    text_vocab_size: int = 0
    text_len: int = 0
    codebook_size: int = 0
    grid_size: int = 0  # the image is grid_size x grid_size tokens (the VQ tokenizer's grid)

    def __post_init__(self) -> None:
        if self.preset not in PRESETS:
            raise ValueError(f"unknown transformer preset {self.preset!r}; choose one of {', '.join(PRESETS)}")
        layers, hidden, heads = self.shape
        if hidden % heads:
            raise ValueError(f"hidden_size={hidden} is not divisible by num_heads={heads}")
        if self.image_order == "blocks" and (self.block_size < 2 or self.depth_layers < 1):
            raise ValueError(f"image_order=blocks needs block_size >= 2 and depth_layers >= 1, got "
                             f"{self.block_size} and {self.depth_layers}")
        if self.image_order == "blocks" and self.image_positions != "rope":
            raise ValueError("image_order=blocks takes image_positions=rope (block positions are learned by RoPE)")
        if self.caption_encoder == "minilm" and self.image_order != "blocks":
            raise ValueError("caption_encoder=minilm is built for image_order=blocks; set image_order: blocks")

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
        return self.grid_size * self.grid_size

    @property
    def sequence_length(self) -> int:
        return self.text_len + self.image_len

    @property
    def block_len(self) -> int:
        """Codes per block: block_size**2 for image_order=blocks, 1 for raster."""
        return self.block_size ** 2 if self.image_order == "blocks" else 1

    @property
    def main_length(self) -> int:
        """Positions the main transformer reads per row in training: text_len + h*w - 1 for
        raster, text_len + blocks - 1 for blocks."""
        return self.text_len + self.image_len // self.block_len - 1

    @property
    def vocab_size(self) -> int:
        """Rows of the (main) embedding: text ids, then a codebook of image ids per place
        in a block (one for raster), padded to VOCAB_MULTIPLE."""
        used = self.text_vocab_size + self.block_len * self.codebook_size
        return -(-used // VOCAB_MULTIPLE) * VOCAB_MULTIPLE

    @property
    def layout(self) -> tuple[int, int, int, int]:
        """(text_vocab_size, text_len, codebook_size, grid_size): what the tokenizers fix."""
        return self.text_vocab_size, self.text_len, self.codebook_size, self.grid_size

    def check_layout(self) -> None:
        missing = [n for n in ("text_vocab_size", "text_len", "codebook_size", "grid_size") if getattr(self, n) <= 0]
        if missing:
            raise ValueError(f"transformer layout not set: {', '.join(missing)}; they come from the text "
                             "tokenizer and the token shards (see mini_t2i.transformer.data)")
        if self.image_order == "blocks" and self.grid_size % self.block_size:
            raise ValueError(f"image_order=blocks: grid_size={self.grid_size} is not a multiple of "
                             f"block_size={self.block_size}; pick a block_size that divides it")

    def with_layout(self, text_vocab_size: int, text_len: int, codebook_size: int, grid_size: int) -> "TransformerConfig":
        return replace(self, text_vocab_size=text_vocab_size, text_len=text_len,
                       codebook_size=codebook_size, grid_size=grid_size)


@dataclass
class TransformerTrainConfig(RunConfig):
    """A training run of the transformer; the PyTorch and the JAX trainer read the same one."""
    tokens: str = "data/tokens/shapes64_train"  # pre-tokenized shards (mini-t2i pretokenize)
    val_tokens: str = "data/tokens/shapes64_val"
    text_tokenizer: str = "mini_t2i/pretrained/text_shapes"
    vq_model: str = "mini_t2i/pretrained/vq_shapes64"  # decodes the sample grids; must match the shards
    model: TransformerConfig = field(default_factory=TransformerConfig)
    run_dir: str = "runs/transformer"
    steps: int = 2000
    weight_decay: float = 0.1  # on matrices and embeddings, not on norms
    grad_accum: int = 1  # micro-batches per optimizer step (per process); batch_size is the global batch
    beta2: float = 0.95
    caption_dropout: float = 0.1  # share of rows trained on the empty caption (classifier-free guidance)
    text_loss_weight: float = 0.0  # DALL-E 1 used 1/8; 0 = image tokens only
    parallel: Literal["ddp", "fsdp"] = "ddp"  # torch: only under torchrun; jax: how the mesh holds the weights
    multihost: bool = False  # jax backend: jax.distributed.initialize() (TPU pod slices, multi-node GPUs)
    val_count: int = 512  # val rows for the val loss
    sample_count: int = 32  # val captions sampled for the grid (scored when they are Shapes World)
    sample_top_k: int = 0  # sampling settings of the grid
    sample_guidance_scale: float = 1.0
    # init_from: a saved transformer (its preset wins over `model`; its layout must match the shards')

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.grad_accum < 1:
            raise ValueError(f"grad_accum={self.grad_accum} must be >= 1")
        if not 0.0 <= self.caption_dropout < 1.0:
            raise ValueError(f"caption_dropout must be in [0, 1), got {self.caption_dropout}")


# --- parameter tables -----------------------------------------------------------------


def layer_parameter_count(hidden: int) -> int:
    """Parameters of one Llama layer of width `hidden`: attention, SwiGLU, two RMSNorms."""
    return 4 * hidden * hidden + 3 * hidden * mlp_width(hidden) + 2 * hidden


def config_parameter_count(cfg: TransformerConfig) -> int:
    """Parameters of the model of cfg (its shape after overrides, its vocabulary), computed
    without building it. Sequence length does not change the count (RoPE has no weights)."""
    layers, hidden, _ = cfg.shape
    per_layer = layer_parameter_count(hidden)
    if cfg.image_order == "blocks":  # main (embedding, layers, norm) + depth (code table, layers, norm, head)
        projection = 384 * hidden if cfg.caption_encoder == "minilm" else 0  # text/minilm.py's FEATURES
        return (cfg.vocab_size * hidden + layers * per_layer + hidden + projection
                + 2 * cfg.codebook_size * hidden + cfg.depth_layers * per_layer + hidden)
    return 2 * cfg.vocab_size * hidden + layers * per_layer + hidden  # embeddings, head, final norm


def preset_parameter_count(preset: str, text_vocab_size: int = SHAPES_LAYOUT["text_vocab_size"],
                           codebook_size: int = SHAPES_LAYOUT["codebook_size"]) -> int:
    """Parameters of a preset for a vocabulary (Shapes World's by default)."""
    return config_parameter_count(TransformerConfig(preset=preset, **{
        **SHAPES_LAYOUT, "text_vocab_size": text_vocab_size, "codebook_size": codebook_size}))


def describe_presets() -> str:
    """A table of the presets and their parameter counts (Shapes World layout)."""
    rows = ["| preset | layers | hidden | heads | parameters |", "|---|---|---|---|---|"]
    for name, (layers, hidden, heads) in PRESETS.items():
        rows.append(f"| {name} | {layers} | {hidden} | {heads} | {preset_parameter_count(name) / 1e6:.1f}M |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(describe_presets())
    print(json.dumps({n: preset_parameter_count(n) for n in PRESETS}))
