"""Stage 3: the CLIP reranker that scores how well an image fits its caption.

The network is transformers' `CLIPModel` (a ViT image tower, a causal text tower, two
projections into one embedding space), sized for 64 px pictures and our own text
tokenizer, so a saved model is also a plain `CLIPModel` state dict. As in DALL-E 1 and
minDALL-E, the generator samples several candidates per caption and this model keeps
the best: `Reranker.score(images, text_ids)` is the cosine similarity of each image
with its caption.

The text tower pools the hidden state at the caption's [EOS] (id 3). transformers 5
has two pooling rules (CLIPTextModel.forward): with eos_token_id == 2 it takes the
argmax of the ids (the old OpenAI rule: EOS was the highest id), otherwise the first
position whose id equals eos_token_id. Our EOS is 3, so the second rule applies, and
the causal mask means the [PAD]s after [EOS] never change the pooled state.

Images enter as uint8 (N, H, W, 3), are scaled to [-1, 1] and, when H differs from
`image_size`, resized (bilinear, antialiased) inside `score`.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from mini_t2i.pixels import pixels_from_uint8
from mini_t2i.presets import PatchModelConfig
from mini_t2i.text.special_ids import BOS_ID, EOS_ID, PAD_ID

if TYPE_CHECKING:
    from transformers import CLIPModel

# name: (layers, hidden size, heads, patch size), the same for both towers; the MLP is 4x hidden.
# Parameter counts are with the Shapes World layout (436 text ids, 24 text positions, 64 px).
PRESETS: dict[str, tuple[int, int, int, int]] = {
    "tiny": (1, 32, 2, 16),  # tests: ~0.04M parameters
    "mini": (3, 128, 4, 8),  # Shapes World on one CPU thread in 20 minutes: ~1.3M
    "small": (4, 256, 4, 8),  # ~6.5M
    "base": (12, 512, 8, 8),  # ~76M
}


@dataclass
class RerankConfig(PatchModelConfig):
    """Both CLIP towers (num_layers etc. set both); shape and layout fields in PatchModelConfig."""
    PRESETS: ClassVar[dict[str, tuple[int, int, int, int]]] = PRESETS
    KIND: ClassVar[str] = "reranker"
    TRAINER: ClassVar[str] = "mini_t2i.rerank.train"

    text_num_layers: int = 0  # 0 = num_layers: a different depth for the text tower
    projection_dim: int = 0  # shared embedding size; 0 = hidden size
    logit_scale_init: float = 2.6592  # log(1 / 0.07), CLIP's initial temperature
    # Layers of the image-text matching head (matcher.py: the caption's tokens attend to the
    # image's patches); 0 = none, and `score` is CLIP's cosine.
    matcher_layers: int = 0


def clip_config(cfg: RerankConfig):
    """The `CLIPConfig` of cfg, with our special ids (a tiny CLIPConfig would keep
    OpenAI's eos id 49407, outside our vocabulary, and pool at position 0)."""
    from transformers import CLIPConfig

    cfg.check_layout()
    layers, hidden, heads, patch = cfg.shape
    tower = dict(hidden_size=hidden, intermediate_size=4 * hidden, num_attention_heads=heads,
                 hidden_act="gelu", attention_dropout=0.0)
    text = dict(tower, num_hidden_layers=cfg.text_num_layers or layers, vocab_size=cfg.text_vocab_size,
                max_position_embeddings=cfg.text_len, pad_token_id=PAD_ID, bos_token_id=BOS_ID,
                eos_token_id=EOS_ID)
    vision = dict(tower, num_hidden_layers=layers, image_size=cfg.image_size, patch_size=patch, num_channels=3)
    return CLIPConfig(text_config=text, vision_config=vision, projection_dim=cfg.projection_dim or hidden,
                      logit_scale_init_value=cfg.logit_scale_init)


def build_clip(cfg: RerankConfig, seed: int | None = None) -> "CLIPModel":
    """A freshly initialised `CLIPModel` (fp32, SDPA attention); seed makes it reproducible."""
    from transformers import CLIPModel

    if seed is not None:
        torch.manual_seed(seed)
    config = clip_config(cfg)
    config._attn_implementation = "sdpa"
    model = CLIPModel(config)
    if model.text_model.eos_token_id != EOS_ID:  # the pooling rule depends on it (module doc)
        raise RuntimeError(f"CLIP text tower pools at id {model.text_model.eos_token_id}, not EOS={EOS_ID}")
    return model


class Reranker(torch.nn.Module):
    """A CLIP model over our tokenizer; `score` ranks generated images against a caption.

    Build one with `Reranker(cfg)` (random weights) or `Reranker.from_pretrained(path)`.
    """

    def __init__(self, cfg: RerankConfig, seed: int | None = None, clip=None) -> None:
        super().__init__()
        self.config = cfg
        # clip: a CLIPModel, or (from_pretrained(light=True)) clip_tensors.ClipTowers, the same
        # inference forward over plain tensors, which spares importing transformers.
        self.clip = build_clip(cfg, seed) if clip is None else clip
        self.matcher = None
        if cfg.matcher_layers:
            from mini_t2i.rerank.matcher import ImageTextMatcher, matcher_config

            _, hidden, heads, _ = cfg.shape
            self.matcher = ImageTextMatcher(matcher_config(cfg.text_vocab_size, cfg.text_len, cfg.matcher_layers,
                                                           hidden, heads, hidden))

    @property
    def device(self) -> torch.device:
        return self.clip.logit_scale.device

    # ------------------------------------------------------------------ embeddings

    def _check_text(self, text_ids: torch.Tensor) -> torch.Tensor:
        text_ids = torch.as_tensor(text_ids)
        if text_ids.dim() == 1:
            text_ids = text_ids[None]
        if text_ids.dim() != 2 or text_ids.shape[1] != self.config.text_len or text_ids.dtype != torch.long:
            raise ValueError(f"text_ids must be a LongTensor (N, text_len={self.config.text_len}), "
                             f"got {text_ids.dtype} {tuple(text_ids.shape)}; encode captions with the "
                             "text tokenizer this reranker was trained with")
        if ((text_ids < 0) | (text_ids >= self.config.text_vocab_size)).any():
            raise ValueError(f"text_ids hold ids outside [0, {self.config.text_vocab_size}); is this the "
                             "text tokenizer the reranker was trained with?")
        if not (text_ids == EOS_ID).any(dim=1).all():
            raise ValueError(f"every row of text_ids needs an [EOS] (id {EOS_ID}): the text tower pools there")
        return text_ids

    def image_embeds(self, pixels: torch.Tensor) -> torch.Tensor:
        """pixels (B, 3, S, S) in [-1, 1] -> unit-norm embeddings (B, D)."""
        return self.image_features(pixels)[0]

    def image_features(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """pixels (B, 3, S, S) -> (unit-norm embeddings (B, D), patch states (B, 1 + P, d)): one
        pass of the vision tower for the cosine and for the matching head."""
        out = self.clip.vision_model(pixel_values=pixels)
        embeds = self.clip.visual_projection(out.pooler_output)
        return F.normalize(embeds, dim=-1), out.last_hidden_state

    def match_logits(self, patches: torch.Tensor, text_ids: torch.Tensor) -> torch.Tensor:
        """The matching head's logit of each (image, caption) row: patches (B, 1 + P, d) from
        image_features, text_ids (B, text_len) -> (B,)."""
        if self.matcher is None:
            raise ValueError("this reranker has no matching head (matcher_layers=0); train one with "
                             "model.matcher_layers=2")
        return self.matcher(text_ids, patches)

    def text_embeds(self, text_ids: torch.Tensor) -> torch.Tensor:
        """text_ids (B, text_len) -> unit-norm embeddings (B, D), pooled at [EOS]."""
        return F.normalize(self.clip.get_text_features(input_ids=text_ids).pooler_output, dim=-1)

    @torch.no_grad()
    def _embed_images(self, images: np.ndarray, batch_size: int) -> torch.Tensor:
        out = []
        for start in range(0, len(images), batch_size):
            x = pixels_from_uint8(images[start:start + batch_size], self.config.image_size).to(self.device)
            out.append(self.image_embeds(x).float())
        return torch.cat(out)  # (N, D)

    @torch.no_grad()
    def _embed_texts(self, text_ids: torch.Tensor, batch_size: int) -> torch.Tensor:
        out = [self.text_embeds(text_ids[s:s + batch_size].to(self.device)).float()
               for s in range(0, len(text_ids), batch_size)]
        return torch.cat(out)  # (T, D)

    # ------------------------------------------------------------------ scores

    def score(self, images: np.ndarray, text_ids: torch.Tensor, batch_size: int = 256,
              use_head: bool | None = None) -> torch.Tensor:
        """How well image i fits caption i: (N,) float32 on the CPU, higher is better: the
        matching head's logit where the reranker has one, else CLIP's cosine similarity.

        images: uint8 (N, H, W, 3) (resized inside when H != config.image_size);
        text_ids: LongTensor (N, text_len), or (1, text_len) for one caption shared by
        all N images (the reranking case). use_head=False reads the cosine even where there is a
        head (True: the head, or an error without one). Runs in eval mode without gradients.
        """
        text_ids = self._check_text(text_ids)
        n = len(images)
        if len(text_ids) not in (1, n):
            raise ValueError(f"text_ids has {len(text_ids)} rows for {n} images; give 1 row or one per image")
        if use_head and self.matcher is None:
            raise ValueError("use_head=True but this reranker has no matching head (matcher_layers=0)")
        if self.matcher is not None and use_head is not False:
            return self._match_scores(images, text_ids.expand(n, -1), batch_size)
        return self.cosine(images, text_ids, batch_size)

    def cosine(self, images: np.ndarray, text_ids: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
        """CLIP's cosine similarity of image i with caption i (or the one caption): (N,) float32."""
        img, txt = self.embed_images(images, batch_size), self.embed_texts(text_ids, batch_size)  # (N, D), (1 or N, D)
        return (img * txt).sum(-1)  # (N,), broadcast over a single caption

    @contextmanager
    def _evaluating(self):
        """Eval mode for the block (dropout off), the previous mode restored after."""
        was_training = self.training
        self.eval()
        try:
            yield
        finally:
            self.train(was_training)

    @torch.no_grad()
    def _match_scores(self, images: np.ndarray, text_ids: torch.Tensor, batch_size: int) -> torch.Tensor:
        with self._evaluating():
            out = []
            for start in range(0, len(images), batch_size):
                x = pixels_from_uint8(images[start:start + batch_size], self.config.image_size).to(self.device)
                _, patches = self.image_features(x)
                out.append(self.match_logits(patches, text_ids[start:start + batch_size].to(self.device)).float())
        return torch.cat(out).cpu()

    def score_matrix(self, images: np.ndarray, text_ids: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
        """Cosine similarities of every image with every caption: (N_images, N_texts) float32."""
        img, txt = self.embed_images(images, batch_size), self.embed_texts(text_ids, batch_size)
        return img @ txt.T

    def embed_images(self, images: np.ndarray, batch_size: int = 256) -> torch.Tensor:
        """uint8 (N, H, W, 3) -> unit-norm CLIP embeddings (N, D) float32 on the CPU (eval mode, no gradients)."""
        with self._evaluating():
            return self._embed_images(images, batch_size).cpu()

    def embed_texts(self, text_ids: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
        """(T, text_len) ids -> unit-norm CLIP embeddings (T, D) float32 on the CPU (eval mode, no gradients)."""
        text_ids = self._check_text(text_ids)
        with self._evaluating():
            return self._embed_texts(text_ids, batch_size).cpu()

    # ------------------------------------------------------------------ files

    def save_pretrained(self, path, stage_config=None) -> Path:
        """Write ``model.safetensors`` (the `CLIPModel` state dict) and ``config.yaml``
        (this RerankConfig, or the stage config holding it under ``model``) into `path`.
        Each file is written atomically."""
        from mini_t2i.checkpoint import save_tensors
        from mini_t2i.config import save_config

        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        save_tensors(self.weights(), path / "model.safetensors")
        if stage_config is not None:
            stage_config = replace(stage_config, model=self.config)  # the layout filled in
        save_config(stage_config if stage_config is not None else self.config, path / "config.yaml")
        return path

    @classmethod
    def from_pretrained(cls, path, device: str | torch.device = "cpu", light: bool = False) -> "Reranker":
        """Load a reranker folder (a run's ``final/``, one of its checkpoints, or
        ``mini_t2i/pretrained/rerank_shapes64``), in eval mode on `device`. light=True (for
        scoring only, a reranker without a matching head): the towers run as
        clip_tensors.ClipTowers, with the same scores and no transformers import; such a
        reranker scores and saves but does not train."""
        from mini_t2i.checkpoint import CheckpointError, load_tensors

        path = Path(path)
        if not path.is_dir():
            raise CheckpointError(f"reranker folder {str(path)!r} does not exist; pass a folder with config.yaml "
                                  "and model.safetensors (e.g. mini_t2i/pretrained/rerank_shapes64)")
        if not (path / "config.yaml").is_file():
            raise CheckpointError(f"{path} has no config.yaml; pass a reranker folder (e.g. runs/rerank/final)")
        cfg = RerankConfig.from_folder(path)
        tensors, _ = load_tensors(path / "model.safetensors")
        # fp16 files load into fp32 weights; a training checkpoint holds the module's own state
        # dict ("clip." + the CLIPModel's keys), a saved folder `weights()`'s layout.
        tensors = {k.removeprefix("clip."): v.float() for k, v in tensors.items()}
        if light and not cfg.matcher_layers:
            from mini_t2i.checkpoint import key_mismatch
            from mini_t2i.rerank.clip_tensors import ClipTowers, clip_keys

            layers, _, heads, _ = cfg.shape
            text_layers = cfg.text_num_layers or layers
            mismatch = key_mismatch(clip_keys(layers, text_layers), tensors)
            if mismatch:
                raise CheckpointError(f"{path / 'model.safetensors'} does not fit config.yaml ({'; '.join(mismatch)})")
            towers = ClipTowers({k: v.to(device) for k, v in tensors.items()}, heads, layers, text_layers)
            return cls(cfg, clip=towers).eval()
        model = cls(cfg)
        model.load_weights(tensors, str(path / "model.safetensors"))
        return model.to(device).eval()

    def weights(self) -> dict[str, torch.Tensor]:
        """The saved tensors: the `CLIPModel` state dict as it is, and the matching head's
        under "matcher." (so a folder without a head is a plain CLIPModel state dict)."""
        state = dict(self.clip.state_dict())
        if self.matcher is not None:
            state.update({f"matcher.{k}": v for k, v in self.matcher.state_dict().items()})
        return state

    def load_weights(self, tensors: dict[str, torch.Tensor], what: str) -> None:
        """Load `weights()`'s layout strictly: every key present, none extra."""
        from mini_t2i.checkpoint import load_state_dict_strict

        head = {k[len("matcher."):]: v for k, v in tensors.items() if k.startswith("matcher.")}
        load_state_dict_strict(self.clip, {k: v for k, v in tensors.items() if not k.startswith("matcher.")}, what)
        if self.matcher is not None or head:
            if self.matcher is None:
                from mini_t2i.checkpoint import CheckpointError

                raise CheckpointError(f"{what} holds a matching head (matcher.*) but the config has "
                                      "matcher_layers=0; the folder's config.yaml and weights disagree")
            load_state_dict_strict(self.matcher, head, what)


def count_parameters(cfg: RerankConfig) -> int:
    """Parameters of a reranker with this config (its layout must be set), its matching head included."""
    return sum(p.numel() for p in Reranker(cfg).parameters())
