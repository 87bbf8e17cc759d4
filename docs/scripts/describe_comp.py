"""Prototype: describe's shortlist ordered by the composition scorer instead of the generator's likelihood."""
import time, math, numpy as np, torch
from collections import defaultdict
torch.set_num_threads(1)
from mini_t2i.pipeline.describe import CaptionIndex, describe_image, shapes_scenes_by_caption
from mini_t2i.pipeline.describe_eval import VOCAB_SCENES
from mini_t2i.pipeline.pipeline import TextToImagePipeline
from mini_t2i.rerank.diagnose import shapes_scenes
from mini_t2i.rerank.objects import CompositionScorer
from mini_t2i.shapes.checker import check_image
from mini_t2i.shapes.scenes import canonical_caption
pipe = TextToImagePipeline.from_pretrained('shapes64')
count = 150
pixels, metas, _ = shapes_scenes('val', count, 0, 64)
truth = [canonical_caption(m) for m in metas]
scene_of = dict(zip(truth, metas))
for c, m in shapes_scenes_by_caption(VOCAB_SCENES, 0).items(): scene_of.setdefault(c, m)
vocab = [c for c in dict.fromkeys(list(pipe.captions) + truth) if c in scene_of]
index = CaptionIndex(pipe, vocab)
sc = CompositionScorer(pipe.reranker, pipe.tokenizer, 0.5, 1.0, 0.0)
res = defaultdict(lambda: defaultdict(list)); secs = defaultdict(float)
for i in range(count):
    t0 = time.perf_counter(); lik = describe_image(pipe, pixels[i], index, top=32, shortlist=32); secs['likelihood'] += time.perf_counter() - t0
    short = [m.caption for m in sorted(lik, key=lambda m: -m.similarity)]  # the cosine's shortlist
    t0 = time.perf_counter()
    ids = pipe.tokenizer.encode(short)
    comp = sc.score(np.repeat(pixels[i:i+1], len(short), 0), ids).numpy()
    secs['composition'] += time.perf_counter() - t0
    picks = {'cosine': short[0], 'likelihood': lik[0].caption, 'composition': short[int(comp.argmax())]}
    # both: z-sum of likelihood rank and composition
    for k, c in picks.items(): res[k][metas[i]['task']].append(bool(check_image(pixels[i], scene_of[c])))
for k, t in res.items():
    every = [x for xs in t.values() for x in xs]; p = np.mean(every)
    print(k, f"{p:.3f} ± {math.sqrt(p*(1-p)/len(every)):.3f}", {a: round(np.mean(b), 2) for a, b in sorted(t.items())}, f"{secs.get(k, 0)/count:.3f} s/img")
