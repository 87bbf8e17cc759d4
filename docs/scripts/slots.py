"""Per-candidate object-view pieces for offline sweeps of how the object term aggregates its slots:
each slot's matched gain over the plain background (0 when no view is matched to it), the left-over
views' penalty, the number of views and the background floor (rerank/objects.py's match_objects, taken apart), plus the
cosine, the relation term and the embeddings. Every candidate is scored (no shortlist).
    python docs/scripts/slots.py CANDS.npz PER OUT.npz"""
import sys, numpy as np, torch
from scipy.optimize import linear_sum_assignment
torch.set_num_threads(1)
from mini_t2i.pipeline.pipeline import TextToImagePipeline
from mini_t2i.pixels import border_colour
from mini_t2i.rerank.objects import CompositionScorer, object_views, parse_objects
src, per, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
d = np.load(src); images, texts = d['images'], d['texts']
pipe = TextToImagePipeline.from_pretrained('shapes64')
rel = CompositionScorer(pipe.reranker, pipe.tokenizer, 0.0, 1.0, 0.0)
emb = pipe.reranker.embed_images(images).numpy()
txt = pipe.reranker.embed_texts(pipe.encode_prompts([str(t) for t in texts])[1]).numpy()
cos = (emb.reshape(len(texts), per, -1) * txt[:, None]).sum(-1)
MAXS = 6
G = np.zeros((len(texts), per, MAXS), np.float32); NS = np.zeros(len(texts), int)
L = np.zeros((len(texts), per), np.float32); F = np.zeros((len(texts), per), np.float32)
R = np.zeros((len(texts), per), np.float32)
NV = np.zeros((len(texts), per), int)  # views (foreground components) per candidate
for i, t in enumerate(texts):
    ims = images[i*per:(i+1)*per]; objs = parse_objects(str(t)); slots = objs.slots; NS[i] = len(slots)
    parts = [object_views(im) for im in ims]
    bg = np.broadcast_to(border_colour(ims)[:, None, None], ims.shape)
    sims = pipe.reranker.score_matrix(np.concatenate([bg] + [v for v, _ in parts]),
                                      pipe.tokenizer.encode(list(objs.phrases))).numpy()
    empty, at = sims[:per], per
    for j, (views, _) in enumerate(parts):
        own = sims[at:at + len(views)]; at += len(views); NV[i, j] = len(views)
        F[i, j] = empty[j][slots].sum()
        if len(own):
            gain = own[:, slots] - empty[j][slots][None]
            r, c = linear_sum_assignment(-gain)
            G[i, j, c] = gain[r, c]
            left = np.setdiff1d(np.arange(len(own)), r)
            if len(left): L[i, j] = (own[left] - empty[j][None]).clip(min=0).max(axis=1).sum()
    if objs.axis: R[i] = rel.view_terms(ims, objs)
    if i % 50 == 0: print(i, flush=True)
np.savez(out, cos=cos, G=G, NS=NS, L=L, F=F, R=R, NV=NV, emb=emb.reshape(len(texts), per, -1))
