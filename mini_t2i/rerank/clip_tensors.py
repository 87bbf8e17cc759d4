"""CLIP's inference forward over a saved reranker's tensors, without transformers.

Reranking 8 candidates costs ~0.03 s; importing transformers' CLIP to run it costs 3-4 s of a
fresh `mini-t2i generate` on a 2-core CPU (docs/speed.md). This module runs the same
computation as `transformers.CLIPModel` (the architecture `rerank/model.py` builds: pre-LN
encoder layers, exact GELU, a causal text tower pooled at our [EOS]) from the state dict,
so a pipeline loaded for sampling never imports transformers. Outputs equal CLIPModel's to
float rounding (tests); the module itself is still what trains and what is saved.

`ClipTowers` offers the part of CLIPModel's interface that `Reranker` reads at inference:

    out = towers.vision_model(pixel_values=x)        # .pooler_output (B, d), .last_hidden_state (B, 1 + P, d)
    towers.visual_projection(out.pooler_output)      # (B, D)
    towers.get_text_features(input_ids=ids)          # .pooler_output (B, D), projected
    towers.logit_scale                               # the learned log temperature
"""

from __future__ import annotations

from types import SimpleNamespace

import torch
import torch.nn.functional as F

from mini_t2i.text.special_ids import EOS_ID

LAYER_NORM_EPS = 1e-5  # CLIPConfig's default, which clip_config keeps
_LAYER_KEYS = [f"{n}.{wb}" for n in ("layer_norm1", "layer_norm2", "mlp.fc1", "mlp.fc2",
                                     *(f"self_attn.{p}_proj" for p in ("q", "k", "v", "out")))
               for wb in ("weight", "bias")]


def clip_keys(vision_layers: int, text_layers: int) -> set[str]:
    """The keys of a CLIPModel state dict with these depths (rerank/model.py's build_clip; tested equal)."""
    keys = {"logit_scale", "visual_projection.weight", "text_projection.weight",
            "vision_model.embeddings.class_embedding", "vision_model.embeddings.patch_embedding.weight",
            "vision_model.embeddings.position_embedding.weight", "text_model.embeddings.token_embedding.weight",
            "text_model.embeddings.position_embedding.weight"}
    keys |= {f"{n}.{wb}" for n in ("vision_model.pre_layrnorm", "vision_model.post_layernorm",
                                   "text_model.final_layer_norm") for wb in ("weight", "bias")}
    for tower, layers in (("vision_model", vision_layers), ("text_model", text_layers)):
        keys |= {f"{tower}.encoder.layers.{i}.{k}" for i in range(layers) for k in _LAYER_KEYS}
    return keys


class ClipTowers:
    """CLIP's two towers as plain tensors: `state` is a CLIPModel state dict (clip_keys'
    keys), `heads` the attention heads of each tower and the layer counts its config's
    (RerankConfig.shape, text_num_layers)."""

    def __init__(self, state: dict[str, torch.Tensor], heads: int, vision_layers: int, text_layers: int) -> None:
        self._state, self.heads = state, heads
        self.vision_layers, self.text_layers = vision_layers, text_layers
        self.logit_scale = state["logit_scale"]

    def state_dict(self) -> dict[str, torch.Tensor]:
        return dict(self._state)

    def _layer_norm(self, x: torch.Tensor, name: str) -> torch.Tensor:
        s = self._state
        return F.layer_norm(x, x.shape[-1:], s[f"{name}.weight"], s[f"{name}.bias"], LAYER_NORM_EPS)

    def _linear(self, x: torch.Tensor, name: str) -> torch.Tensor:
        return F.linear(x, self._state[f"{name}.weight"], self._state.get(f"{name}.bias"))

    def _encoder(self, x: torch.Tensor, tower: str, layers: int, causal: bool) -> torch.Tensor:
        """x (B, T, d) -> (B, T, d) through the tower's pre-LN layers."""
        batch, length, hidden = x.shape
        split = lambda t: t.view(batch, length, self.heads, hidden // self.heads).transpose(1, 2)  # noqa: E731
        for i in range(layers):
            name = f"{tower}.encoder.layers.{i}"
            h = self._layer_norm(x, f"{name}.layer_norm1")
            q, k, v = (split(self._linear(h, f"{name}.self_attn.{p}_proj")) for p in "qkv")  # (B, H, T, D)
            attn = F.scaled_dot_product_attention(q, k, v, is_causal=causal)  # scale D^-0.5, as CLIP's
            x = x + self._linear(attn.transpose(1, 2).reshape(batch, length, hidden), f"{name}.self_attn.out_proj")
            h = self._layer_norm(x, f"{name}.layer_norm2")
            x = x + self._linear(F.gelu(self._linear(h, f"{name}.mlp.fc1")), f"{name}.mlp.fc2")
        return x

    def vision_model(self, pixel_values: torch.Tensor) -> SimpleNamespace:
        """pixels (B, 3, S, S) -> last_hidden_state (B, 1 + P, d), pooler_output (B, d) (the
        post-LN [CLS] state)."""
        s, p = self._state, "vision_model.embeddings"
        patches = F.conv2d(pixel_values, s[f"{p}.patch_embedding.weight"],
                           stride=s[f"{p}.patch_embedding.weight"].shape[-1])  # (B, d, S/ps, S/ps)
        patches = patches.flatten(2).transpose(1, 2)  # (B, P, d)
        cls = s[f"{p}.class_embedding"].expand(patches.shape[0], 1, -1)
        x = torch.cat([cls, patches], dim=1) + s[f"{p}.position_embedding.weight"]  # (B, 1 + P, d)
        x = self._layer_norm(x, "vision_model.pre_layrnorm")  # (sic: transformers' name)
        x = self._encoder(x, "vision_model", self.vision_layers, causal=False)
        return SimpleNamespace(last_hidden_state=x,
                               pooler_output=self._layer_norm(x[:, 0], "vision_model.post_layernorm"))

    def visual_projection(self, pooled: torch.Tensor) -> torch.Tensor:
        return self._linear(pooled, "visual_projection")  # (B, D)

    def get_text_features(self, input_ids: torch.Tensor) -> SimpleNamespace:
        """ids (B, T) -> pooler_output (B, D): the final-LN state at the first [EOS], projected."""
        s, p = self._state, "text_model.embeddings"
        x = F.embedding(input_ids, s[f"{p}.token_embedding.weight"]) + s[f"{p}.position_embedding.weight"][:input_ids.shape[1]]
        x = self._layer_norm(self._encoder(x, "text_model", self.text_layers, causal=True), "text_model.final_layer_norm")
        eos = (input_ids == EOS_ID).int().argmax(dim=-1)  # (B,) the first [EOS] (Reranker checks there is one)
        pooled = x[torch.arange(x.shape[0], device=x.device), eos]
        return SimpleNamespace(pooler_output=self._linear(pooled, "text_projection"))
