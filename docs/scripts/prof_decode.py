import time, torch
torch.set_num_threads(1)
from mini_t2i.transformer.config import SHAPES_LAYOUT, TransformerConfig
from mini_t2i.transformer.model import build_model
from mini_t2i.bench.sampling import PEERS_LAYOUT
from mini_t2i.transformer.decoder import ImageTokenDecoder
from mini_t2i.transformer.sampler import filter_logits, pick_tokens
cfg = TransformerConfig(preset="small", **{**SHAPES_LAYOUT, **PEERS_LAYOUT})
model = build_model(cfg, seed=0).eval()
for weights in ("fp16", "int8", "fp32"):
    for rows in (1, 2):
        dec = ImageTokenDecoder(model, cfg, max_batch=rows, decode_weights=weights)
        ids = torch.randint(4, 1000, (rows, cfg.text_len))
        with torch.inference_mode():
            dec.prefill(ids)
            tok = torch.full((rows, 1), cfg.image_offset + 5)
            for _ in range(5): dec.decode(tok)
            t0 = time.perf_counter(); n = 100
            for _ in range(n): logits = dec.decode(tok)
            step = (time.perf_counter() - t0) / n
            t0 = time.perf_counter()
            for _ in range(n):
                f = filter_logits(logits, top_k=256); pick_tokens(f, torch.rand(rows), 1.0)
            samp = (time.perf_counter() - t0) / n
            # the matmuls alone
            layers = dec.core.layers
            x = torch.randn(rows, 1, cfg.hidden if hasattr(cfg, 'hidden') else model.config.hidden_size)
            t0 = time.perf_counter()
            for _ in range(n):
                for (_, qkv, o, _, gu, down) in layers:
                    qkv(x); o(x); g = gu(x); down(torch.randn(rows, 1, g.shape[-1] // 2))
                dec.head(x[:, 0])
            mm = (time.perf_counter() - t0) / n
        print(f"{weights} rows={rows}: step {step*1000:.2f} ms, matmuls alone {mm*1000:.2f} ms, top-k+pick {samp*1000:.2f} ms, position {dec.core.position}")
n = sum(w.numel() for l in model.model.layers for w in (l.self_attn.q_proj.weight, l.self_attn.k_proj.weight, l.self_attn.v_proj.weight, l.self_attn.o_proj.weight, l.mlp.gate_proj.weight, l.mlp.up_proj.weight, l.mlp.down_proj.weight)) + cfg.codebook_size * model.config.hidden_size
print("decode-step weights:", n, "params;", n * 2 / 1e6, "MB fp16")
