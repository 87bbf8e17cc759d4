import time, numpy as np, torch
torch.set_num_threads(1)
from mini_t2i.pipeline.pipeline import TextToImagePipeline
pipe = TextToImagePipeline.from_pretrained('shapes64')
for prompt in ["a red circle above a blue square", "four purple squares", "a pink cross and a cyan circle", "a large yellow diamond"]:
    _, ids = pipe.encode_prompts(prompt)
    rows = ids.repeat(8, 1)
    t0 = time.perf_counter(); out = pipe(prompt, num_images=1, num_candidates=8); total = time.perf_counter() - t0
    images, _ = pipe.generate_candidates(rows, list(range(8)), with_scores=False, **pipe.sampling_settings())
    best = {}
    for name, w in (("cosine", None), ("shipped", 1)):
        ts = []
        for _ in range(5):
            t0 = time.perf_counter()
            pipe.score(images, rows) if w else pipe.reranker.score(images, rows)
            ts.append(time.perf_counter() - t0)
        best[name] = min(ts)
    print(f"{prompt!r}: generate {total:.3f} s, rerank cosine {best['cosine']*1000:.1f} ms, shipped {best['shipped']*1000:.1f} ms")
