"""Object-level consensus, offline: does a candidate's matched object look like the same caption's
objects in the other candidates? A misdrawn object (a cross half drawn as a star) is an outlier among
the prompt's views of that phrase, while clean ones agree; the image-level consensus term cannot see
one object. Per matched view: the mean cosine (the reranker's image embeddings) to its `m` nearest
views of the same phrase in the prompt's other candidates; a candidate's term is the smallest over
its slots (a missing slot: 0). Re-scored over weights, neighbours and shortlists beside the shipped
scorer (objects.py, shortlist 4, object 0.5, relation 1, consensus 0.25).
    python docs/scripts/object_consensus.py CANDS.npz PIECES.npz [FIRST_K]   # PIECES cached
"""
import itertools, os, sys
import numpy as np, torch
from shortlist import consensus, shortlist_pick
from scipy.optimize import linear_sum_assignment
torch.set_num_threads(1)
src, cache = sys.argv[1], sys.argv[2]
k_use = int(sys.argv[3]) if len(sys.argv) > 3 else 0
d = np.load(src); correct, tasks, texts = d['correct'], d['tasks'], d['texts']
P, K = correct.shape
MAXS = 6
if not os.path.exists(cache):
    from mini_t2i.pipeline.pipeline import TextToImagePipeline
    from mini_t2i.pixels import border_colour
    from mini_t2i.rerank.objects import CompositionScorer, match_objects, object_views, parse_objects
    pipe = TextToImagePipeline.from_pretrained('mini_t2i/pretrained/shapes64')
    rel = CompositionScorer(pipe.reranker, pipe.tokenizer, 0.0, 1.0, 0.0)
    images = d['images']
    emb = pipe.reranker.embed_images(images).numpy().reshape(P, K, -1)
    txt = pipe.reranker.embed_texts(pipe.encode_prompts([str(t) for t in texts])[1]).numpy()
    cos = (emb * txt[:, None]).sum(-1)
    M = np.zeros((P, K), np.float32); R = np.zeros((P, K), np.float32)
    V = np.zeros((P, K, MAXS, emb.shape[-1]), np.float32)  # the view matched to each slot (0: none)
    has = np.zeros((P, K, MAXS), bool); ph = np.full((P, MAXS), -1)
    for i, t in enumerate(texts):
        ims = images[i * K:(i + 1) * K]; objs = parse_objects(str(t)); slots = objs.slots
        ph[i, :len(slots)] = slots
        parts = [object_views(im) for im in ims]
        bg = np.broadcast_to(border_colour(ims)[:, None, None], ims.shape)
        stack = np.concatenate([bg] + [v for v, _ in parts])
        e = pipe.reranker.embed_images(stack)
        sims = (e @ pipe.reranker.embed_texts(pipe.tokenizer.encode(list(objs.phrases))).T).numpy()
        e = e.numpy()
        empty, at = sims[:K], K
        for j, (views, _) in enumerate(parts):
            own = sims[at:at + len(views)]; ve = e[at:at + len(views)]; at += len(views)
            M[i, j] = match_objects(own, empty[j], objs)
            if len(own):
                r, c = linear_sum_assignment(-(own[:, slots] - empty[j][slots][None]))
                V[i, j, c] = ve[r]; has[i, j, c] = True
        if objs.axis: R[i] = rel.view_terms(ims, objs)
        if i % 50 == 0: print(i, flush=True)
    np.savez(cache, cos=cos, M=M, R=R, V=V, has=has, ph=ph, emb=emb)
t = np.load(cache)
cos, M, R, V, has, ph, emb = (t[k] for k in ('cos', 'M', 'R', 'V', 'has', 'ph', 'emb'))
if k_use:
    correct, cos, M, R, V, has, emb = (a[:, :k_use] for a in (correct, cos, M, R, V, has, emb)); K = k_use
cons = consensus(emb)


def typicality(m, pool_rows):
    """(P, K): each candidate's weakest slot, by its view's mean cosine to the m nearest views of the same
    phrase among the other candidates in pool_rows (P, n) (the candidates the term may look at)."""
    out = np.zeros((P, K), np.float32)
    for p in range(P):
        pool = pool_rows[p]
        slots = [s for s in range(MAXS) if ph[p, s] >= 0]
        for j in range(K):
            worst = np.inf
            for s in slots:
                if not has[p, j, s]: worst = min(worst, 0.0); continue
                same = [s2 for s2 in slots if ph[p, s2] == ph[p, s]]
                others = [V[p, j2, s2] for j2 in pool if j2 != j for s2 in same if has[p, j2, s2]]
                if not others: continue
                c = np.sort(np.stack(others) @ V[p, j, s])[::-1][:m]
                worst = min(worst, float(c.mean()))
            out[p, j] = 0.0 if worst == np.inf else worst
    return out


def pick(ow, rw, cw, tw, typ, short):
    return shortlist_pick(cos, cons, ow * M + rw * R + tw * typ, short, cw)


print('P', P, 'K', K, 'oracle', correct.any(1).mean().round(3), 'one sample', correct.mean().round(3))
rows = []
for short in (4, 8, 16, 32):
    if short > K: continue
    order = np.argsort(-cos, axis=1, kind='stable')[:, :short]
    for pool_name, pool in (('shortlist', order), ('all', np.tile(np.arange(K), (P, 1)))):
        if pool_name == 'all' and short == K: continue
        for m in (1, 3, 8):
            typ = typicality(m, pool)
            for tw, ow in itertools.product((0, 0.25, 0.5, 1, 2, 4), (0.5, 1)):
                ok = correct[np.arange(P), pick(ow, 1.0, 0.25, tw, typ, short)]
                rows.append((ok.mean(), pool_name, m, tw, ow, short,
                             ' '.join(f'{x[:6]}={ok[tasks == x].mean():.2f}' for x in sorted(set(tasks)))))
for pool_name in ('shortlist', 'all'):  # views of the shortlist only (the scorer's cost) / of every candidate
    print('pool:', pool_name)
    for r in sorted([r for r in rows if r[1] == pool_name], key=lambda r: -r[0])[:8]:
        print(f'  {r[0]:.3f} m={r[2]} typ={r[3]} obj={r[4]} short={r[5]} {r[6]}')
for r in rows:
    if r[1] == 'shortlist' and r[3] == 0 and r[4] == 0.5 and r[5] == 4 and r[2] == 1: print('shipped', f'{r[0]:.3f}', r[6])
