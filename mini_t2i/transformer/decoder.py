"""A fast decode path over the transformer's own weights: prefill, then one token at a time.

transformers' Llama spends most of a small model's decode step outside the matmuls: per
layer module calls, cache bookkeeping, mask building, and on CPUs SDPA's flash kernel,
which is slow for a single query (74 % of a batch-1 step in one profile). For the sizes
this project samples, the step is memory-bound (every weight is read once per token), so
the fastest step is the one that does nothing but read the weights once:

    x (B, 1, d) -> per layer: rmsnorm -> one fused q|k|v matmul -> RoPE at this position
                  -> write k, v into the preallocated cache (layers, B, H, max_len, D) in place
                  -> attention of 1 query over positions 0..p as two small matmuls
                  -> o_proj -> rmsnorm -> one fused gate|up matmul -> SwiGLU -> down
                -> final rmsnorm -> only the image rows of lm_head -> (B, codebook) logits

The weights are the model's own tensors (q|k|v and gate|up concatenated once at build
time). The logits agree with the Llama forward to float rounding (tests). Prefill runs the
same code over all prompt positions with a causal mask.
With decode_weights="fused" the whole loop above (prefill and decode) is one C call over
the same cache in fp16 (fused.py): a batch-1 step at 83-100 % of the read bandwidth.

`CachedLlama` is that loop over a LlamaModel's layers; `ImageTokenDecoder` puts the raster
model's embedding and head around it, `BlockDecoder` runs two of them for the
block-factorized model (blocks.py): the main one a step per block, the depth one a step
per code. `decoders(cfg)` picks the pair for a config.

`ReferenceDecoder` (and `BlockReferenceDecoder`) have the same interface but run the whole
sequence through the model's own forward at every step: no cache, the reference the fast
path is tested against (and `use_cache=False` in the sampler).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from mini_t2i.transformer.blocks import block_embeddings, caption_embeddings
from mini_t2i.transformer.config import TransformerConfig
from mini_t2i.transformer.model import image_logits, image_position_embeds
from mini_t2i.transformer.quantize import linear_of


class CachedLlama:
    """A LlamaModel's layers as fused weights over a preallocated KV cache of `max_batch`
    rows and `max_len` positions: forward((B, T, d) input embeddings) -> (B, d), the final
    normed hidden state of the last position, with the cache advanced by T."""

    def __init__(self, llama, max_batch: int, max_len: int, rope_theta: float, decode_weights: str = "fp32"):
        config = llama.config
        hidden, heads = config.hidden_size, config.num_attention_heads
        self.heads, self.head_dim, self.eps = heads, hidden // heads, config.rms_norm_eps
        self.layers = []
        with torch.no_grad():
            for layer in llama.layers:
                attn, mlp = layer.self_attn, layer.mlp
                self.layers.append((
                    layer.input_layernorm.weight,
                    linear_of(attn.q_proj.weight, attn.k_proj.weight, attn.v_proj.weight, weights_as=decode_weights),  # -> 3d
                    linear_of(attn.o_proj.weight, weights_as=decode_weights),
                    layer.post_attention_layernorm.weight,
                    linear_of(mlp.gate_proj.weight, mlp.up_proj.weight, weights_as=decode_weights),  # -> 2m
                    linear_of(mlp.down_proj.weight, weights_as=decode_weights),
                ))
        self.norm = llama.norm.weight
        weight = llama.norm.weight
        self.max_len = max_len
        shape = (len(self.layers), max_batch, heads, max_len, self.head_dim)
        cache_dtype = torch.float16 if decode_weights == "fused" else weight.dtype  # fused: half the cache's bytes
        self.keys = torch.zeros(shape, dtype=cache_dtype, device=weight.device)
        self.values = torch.zeros(shape, dtype=cache_dtype, device=weight.device)
        # RoPE tables for every position, (max_len, D), in the weights' dtype as Llama applies them.
        inv_freq = 1.0 / (rope_theta ** (torch.arange(0, self.head_dim, 2, dtype=torch.float32,
                                                      device=weight.device) / self.head_dim))
        angles = torch.outer(torch.arange(max_len, dtype=torch.float32, device=weight.device), inv_freq)
        angles = torch.cat([angles, angles], dim=-1)
        self.cos, self.sin = angles.cos().to(weight.dtype), angles.sin().to(weight.dtype)
        self.position = 0
        # decode_weights="fused": the whole forward is one C call over this cache (fused.py), and
        # self.layers' matrices are its FusedLinear copies.
        self.fused = None
        if decode_weights == "fused":
            from mini_t2i.transformer.fused import FusedStack

            self.fused = FusedStack(self.layers, self.norm, self.keys, self.values, self.cos, self.sin, self.eps)

    def rmsnorm(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        x32 = x.float()
        return weight * (x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)).to(x.dtype)

    def _rope(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        half = x.shape[-1] // 2  # x (B, H, T, D); cos, sin (T, D)
        rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
        return x * cos + rotated * sin

    def check(self, batch: int, steps: int) -> None:
        if self.position and self.position >= self.max_len:
            raise ValueError(f"the cache holds {self.max_len} positions; the sequence is complete")
        if batch > self.keys.shape[1] or self.position + steps > self.max_len:
            raise ValueError(f"{steps} positions of {batch} rows from position {self.position} exceeds the cache "
                             f"({self.keys.shape[1]} rows, {self.max_len} positions)")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, T, d) at positions position..position+T-1 -> (B, d) normed hidden state of the last."""
        batch, steps, _ = x.shape
        self.check(batch, steps)
        start, end = self.position, self.position + steps
        if self.fused is not None:
            self.position = end
            return self._fused_forward(x, start)  # (B, d)
        heads, dim = self.heads, self.head_dim
        cos, sin = self.cos[start:end], self.sin[start:end]
        for i, (norm1, qkv_proj, o_proj, norm2, gate_up_proj, down_proj) in enumerate(self.layers):
            qkv = qkv_proj(self.rmsnorm(x, norm1)).to(x.dtype)  # (B, T, 3d)
            q, k, v = qkv.view(batch, steps, 3, heads, dim).permute(2, 0, 3, 1, 4)  # each (B, H, T, D)
            q, k = self._rope(q, cos, sin), self._rope(k, cos, sin)
            self.keys[i, :batch, :, start:end] = k
            self.values[i, :batch, :, start:end] = v
            keys, values = self.keys[i, :batch, :, :end], self.values[i, :batch, :, :end]  # (B, H, end, D)
            scores = torch.matmul(q, keys.transpose(-1, -2)) * dim ** -0.5  # (B, H, T, end)
            if steps > 1:  # prefill: position start+t sees keys 0..start+t
                mask = torch.ones(steps, end, dtype=torch.bool, device=x.device).tril(start)
                scores = scores.masked_fill(~mask, float("-inf"))
            attn = torch.matmul(scores.softmax(dim=-1, dtype=torch.float32).to(q.dtype), values)  # (B, H, T, D)
            x = x + o_proj(attn.transpose(1, 2).reshape(batch, steps, heads * dim)).to(x.dtype)
            gate, up = gate_up_proj(self.rmsnorm(x, norm2)).to(x.dtype).chunk(2, dim=-1)  # (B, T, m) each
            x = x + down_proj(F.silu(gate) * up).to(x.dtype)
        self.position = end
        return self.rmsnorm(x[:, -1], self.norm)  # (B, d)

    def _fused_forward(self, x: torch.Tensor, start: int) -> torch.Tensor:
        """The fused stack's forward, a prefill's identical rows run once (a prompt's candidates
        share their caption, guidance's rows the empty one) and their cache copied: the stack
        computes each row alone, so this is bit for bit what running every row gives."""
        x = x.to(torch.float32)
        batch, steps, hidden = x.shape
        if steps == 1 or batch == 1:
            return self.fused(x, start)
        # Rows compared by their bits: equal bits, equal results.
        unique, inverse = torch.unique(x.contiguous().view(torch.int32).reshape(batch, -1), dim=0, return_inverse=True)
        if unique.shape[0] == batch:
            return self.fused(x, start)
        out = self.fused(unique.view(torch.float32).view(-1, steps, hidden), start)  # into cache rows 0..U-1
        end = start + steps
        self.keys[:, :batch, :, start:end] = self.keys[:, inverse, :, start:end]  # the right side is a copy
        self.values[:, :batch, :, start:end] = self.values[:, inverse, :, start:end]
        return out[inverse]  # (B, d)


class ImageTokenDecoder:
    """The raster model's fast decoder: its CachedLlama, the token embedding and the image
    rows of the head.

        decoder = ImageTokenDecoder(model, cfg, max_batch=2 * B)
        logits = decoder.prefill(ids)        # (B', T) prompt ids -> (B', codebook) logits of position T
        logits = decoder.decode(ids_1)       # (B', 1) the token just chosen -> next (B', codebook) logits
    """

    # Network evaluations run by all fast decoders of this process (prefill and decode steps,
    # BlockDecoder's too): the decoders call no nn.Module, so measurements
    # (compare/measure.py) read this instead of a forward hook.
    evaluations = 0

    def __init__(self, model, cfg: TransformerConfig, max_batch: int, decode_weights: str = "fp32"):
        self.cfg = cfg
        self.core = CachedLlama(model.model, max_batch, cfg.sequence_length, cfg.rope_theta, decode_weights)
        self.embed = model.model.embed_tokens.weight  # (vocab, d)
        # image_positions="rowcol": the learned row and column tables (model.py), added per position.
        self.rowcol = (model.image_rows.weight, model.image_cols.weight) if cfg.image_positions == "rowcol" else None
        # Only image tokens are ever sampled: the head's other rows are never needed.
        rows = slice(cfg.image_offset, cfg.image_offset + cfg.codebook_size)
        self.head = linear_of(model.lm_head.weight, rows=rows, weights_as=decode_weights)  # (B, d) -> (B, codebook)

    def _forward(self, ids: torch.Tensor) -> torch.Tensor:
        """ids (B, T) at the next T positions -> (B, codebook) logits of the last one."""
        x = F.embedding(ids, self.embed)  # (B, T, d)
        if self.rowcol is not None:
            x = x + image_position_embeds(*self.rowcol, self.cfg.text_len, self.core.position, ids.shape[1])
        ImageTokenDecoder.evaluations += 1
        return self.head(self.core.forward(x)).float()  # (B, codebook)

    @torch.inference_mode()
    def prefill(self, ids: torch.Tensor) -> torch.Tensor:
        """Start a new sequence: (B, T) prompt ids -> (B, codebook) logits for position T."""
        self.core.position = 0
        return self._forward(ids)

    @torch.inference_mode()
    def decode(self, ids: torch.Tensor) -> torch.Tensor:
        """(B, 1) the ids just sampled -> (B, codebook) logits of the next position."""
        return self._forward(ids)


class BlockDecoder:
    """The fast decoder of image_order="blocks" (blocks.py), with ImageTokenDecoder's interface:
    a CachedLlama for the main transformer (one position per block) and one for the depth
    transformer (k*k positions, restarted at every block).

        decoder = BlockDecoder(model, cfg, max_batch=2 * B)
        logits = decoder.prefill(ids)        # (B', text_len + whole blocks' codes, in sequence order) -> first logits
        logits = decoder.decode(ids_1)       # (B', 1) the code just chosen (+ image_offset) -> next logits
    """

    def __init__(self, model, cfg: TransformerConfig, max_batch: int, decode_weights: str = "fp32"):
        self.cfg = cfg
        self.main = CachedLlama(model.model, max_batch, cfg.main_length, cfg.rope_theta, decode_weights)
        self.depth = CachedLlama(model.depth, max_batch, cfg.block_len, cfg.rope_theta, decode_weights)
        self.embed, self.codes_embed = model.model.embed_tokens.weight, model.depth.embed_tokens.weight
        self.caption_proj = model.caption_proj.weight if cfg.caption_encoder == "minilm" else None
        self.head = linear_of(model.head.weight, weights_as=decode_weights)  # (B, d) -> (B, codebook)
        self.block = torch.zeros(max_batch, cfg.block_len, dtype=torch.long, device=self.embed.device)
        self.place = 0  # codes of the current block chosen so far

    def _start_block(self, h: torch.Tensor) -> torch.Tensor:
        """(B, d) the main transformer's context of a block -> (B, codebook) logits of its first code."""
        self.depth.position, self.place = 0, 0
        ImageTokenDecoder.evaluations += 1
        return self.head(self.depth.forward(h[:, None])).float()

    @torch.inference_mode()
    def prefill(self, ids: torch.Tensor) -> torch.Tensor:
        """Start a new sequence: (B, text_len + m) ids, m a multiple of the block's codes."""
        cfg = self.cfg
        codes = ids[:, cfg.text_len:] - cfg.image_offset  # (B, m)
        if codes.shape[1] % cfg.block_len:
            raise ValueError(f"a block prefill takes whole blocks of {cfg.block_len} codes, got {codes.shape[1]}")
        x = caption_embeddings(self.embed, self.caption_proj, cfg, ids[:, :cfg.text_len])  # (B, text_len, d)
        if codes.shape[1]:
            blocks = codes.reshape(ids.shape[0], -1, cfg.block_len)
            x = torch.cat([x, block_embeddings(self.embed, cfg, blocks)], dim=1)
        self.main.position = 0
        return self._start_block(self.main.forward(x))

    @torch.inference_mode()
    def decode(self, ids: torch.Tensor) -> torch.Tensor:
        """(B, 1) the code just sampled (+ image_offset) -> (B, codebook) logits of the next code."""
        batch, codes = ids.shape[0], ids[:, 0] - self.cfg.image_offset  # (B,)
        self.block[:batch, self.place] = codes
        self.place += 1
        if self.place == self.cfg.block_len:  # the block is complete: one main step for the next
            x = block_embeddings(self.embed, self.cfg, self.block[:batch, None])  # (B, 1, d)
            return self._start_block(self.main.forward(x))
        ImageTokenDecoder.evaluations += 1
        return self.head(self.depth.forward(F.embedding(codes[:, None], self.codes_embed))).float()


class ReferenceDecoder:
    """`ImageTokenDecoder`'s interface over the model's own Llama forward, without a cache:
    it keeps the ids and recomputes every position each step (slow, but the plain reference).

        decoder = ReferenceDecoder(model, cfg, max_batch=2 * B)
        logits = decoder.prefill(ids)        # (B', T) prompt ids -> (B', codebook) logits of position T
        logits = decoder.decode(ids_1)       # (B', 1) the token just chosen -> next (B', codebook) logits
    """

    # Its own count, not ImageTokenDecoder's: these calls go through the model's forward, which
    # compare/measure.py already counts with a forward hook.
    evaluations = 0

    def __init__(self, model, cfg: TransformerConfig, max_batch: int, decode_weights: str = "fp32"):
        if decode_weights != "fp32":
            raise ValueError(f"the reference decoder runs the model as it is; decode_weights={decode_weights!r} "
                             "needs use_cache=True")
        self.model, self.cfg, self.max_batch = model, cfg, max_batch
        self.max_len = cfg.sequence_length
        self.ids: torch.Tensor | None = None

    def _forward(self) -> torch.Tensor:
        ReferenceDecoder.evaluations += 1
        logits = self.model(input_ids=self.ids, use_cache=False, logits_to_keep=1).logits[:, -1]
        return image_logits(self.cfg, logits.float())  # (B, codebook)

    @torch.inference_mode()
    def prefill(self, ids: torch.Tensor) -> torch.Tensor:
        """Start a new sequence: (B, T) prompt ids -> (B, codebook) logits for position T."""
        if ids.shape[0] > self.max_batch or ids.shape[1] > self.max_len:
            raise ValueError(f"prefill of {tuple(ids.shape)} exceeds the decoder ({self.max_batch} rows, "
                             f"{self.max_len} positions)")
        self.ids = ids
        return self._forward()

    @torch.inference_mode()
    def decode(self, ids: torch.Tensor) -> torch.Tensor:
        """(B, 1) the ids just sampled -> (B, codebook) logits of the next position."""
        if self.ids is None:
            raise ValueError("decode before prefill: start the sequence with prefill(ids)")
        if self.ids.shape[1] >= self.max_len:
            raise ValueError(f"the model reads {self.max_len} positions; the sequence is complete")
        self.ids = torch.cat([self.ids, ids], dim=1)
        return self._forward()


class BlockReferenceDecoder(ReferenceDecoder):
    """ReferenceDecoder for image_order="blocks": BlockLlama's own forward over the caption and
    the codes so far (zeros after them, which the causal model never reads) at every step."""

    def _forward(self) -> torch.Tensor:
        ReferenceDecoder.evaluations += 1
        cfg = self.cfg
        codes = self.ids[:, cfg.text_len:] - cfg.image_offset  # (B, m)
        full = torch.zeros(codes.shape[0], cfg.image_len, dtype=torch.long, device=codes.device)
        full[:, :codes.shape[1]] = codes
        return self.model(self.ids[:, :cfg.text_len], full)[:, codes.shape[1]].float()  # (B, codebook)


def decoders(cfg: TransformerConfig) -> tuple[type, type]:
    """(fast decoder class, reference decoder class) for cfg's image_order."""
    if cfg.image_order == "blocks":
        return BlockDecoder, BlockReferenceDecoder
    return ImageTokenDecoder, ReferenceDecoder
