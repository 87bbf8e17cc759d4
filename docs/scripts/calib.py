"""Prototype: object views scored by a softmax over single-object captions (calibrated), offline."""
import sys, itertools, numpy as np, torch
torch.set_num_threads(1)
from mini_t2i.pipeline.pipeline import TextToImagePipeline
from mini_t2i.rerank.objects import parse_objects, object_views, match_objects, relation_between, CaptionObjects
from mini_t2i.pixels import border_colour
src, per, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
d = np.load(src); images, texts = d['images'], d['texts']
pipe = TextToImagePipeline.from_pretrained('shapes64')
r = pipe.reranker
vocab = [c for c in pipe.captions if len(c.split()) <= 4 and parse_objects(c).counts == (1,)]
print('vocab', len(vocab))
V = r.embed_texts(pipe.tokenizer.encode(vocab)).numpy()  # (Q, D)
scale = float(r.clip.logit_scale.exp()); print('scale', scale)
res = {k: [] for k in ['O', 'R', 'OC', 'RC']}
for i, t in enumerate(texts):
    ims = images[i*per:(i+1)*per]; objs = parse_objects(str(t))
    P = r.embed_texts(pipe.tokenizer.encode(list(objs.phrases))).numpy()  # (m, D)
    parts = [object_views(im) for im in ims]
    bgs = np.broadcast_to(border_colour(ims)[:, None, None], ims.shape)
    stack = np.concatenate([bgs] + [v for v, _ in parts])
    E = r.embed_images(stack).numpy()
    cos = E @ P.T  # (n, m)
    cv = E @ V.T  # (n, Q)
    # calibrated: log p(phrase | view) among phrase + vocab
    lse = np.logaddexp(np.log(np.exp(scale * cv).sum(1, keepdims=True)), scale * cos)  # (n, m) include the phrase itself
    cal = (scale * cos - lse) / scale  # in cosine-like units
    at = len(ims)
    o, rr, oc, rc = [], [], [], []
    for k, (views, cen) in enumerate(parts):
        sl = slice(at, at + len(views)); at += len(views)
        o.append(match_objects(cos[sl], cos[k], objs)); oc.append(match_objects(cal[sl], cal[k], objs))
        rr.append(relation_between(cos[sl], cen, objs.axis) if objs.axis else 0.0)
        rc.append(relation_between(cal[sl], cen, objs.axis) if objs.axis else 0.0)
    res['O'].append(o); res['R'].append(rr); res['OC'].append(oc); res['RC'].append(rc)
np.savez(out, **{k: np.array(v) for k, v in res.items()})
