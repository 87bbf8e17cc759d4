"""Prototype: for counted captions, how alike the matched views are (mean pairwise cosine of their embeddings)."""
import sys, numpy as np, torch
from scipy.optimize import linear_sum_assignment
torch.set_num_threads(1)
from mini_t2i.pipeline.pipeline import TextToImagePipeline
from mini_t2i.rerank.objects import parse_objects, object_views
from mini_t2i.pixels import border_colour
src, per, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
d = np.load(src); images, texts, tasks = d['images'], d['texts'], d['tasks']
pipe = TextToImagePipeline.from_pretrained('shapes64'); r = pipe.reranker
L = np.zeros((len(texts), per))
for i, t in enumerate(texts):
    objs = parse_objects(str(t))
    if max(objs.counts) < 2: continue
    ims = images[i*per:(i+1)*per]
    P = r.embed_texts(pipe.tokenizer.encode(list(objs.phrases))).numpy()
    for k, im in enumerate(ims):
        v, _ = object_views(im)
        if len(v) < 2: continue
        E = r.embed_images(v).numpy()
        sims = E @ P.T
        n = objs.counts[0]
        top = np.argsort(-sims[:, 0])[:n]
        S = E[top] @ E[top].T
        m = len(top)
        L[i, k] = (S.sum() - m) / (m * (m - 1)) if m > 1 else 0
np.save(out, L)
