"""Re-score slots.py's pieces offline: the object term as the mean over slots (shipped) plus
`weakest` x the smallest slot gain (a named object missing or misdrawn costs the whole image) and
`extra` x the number of views beyond the caption's objects (a stray blob costs, whatever it looks
like), over weights and shortlists, beside the shipped setting.
    python docs/scripts/slot_sweep.py CANDS.npz SLOTS.npz [FIRST_K]"""
import sys, itertools, numpy as np
from shortlist import consensus, shortlist_pick
d = np.load(sys.argv[1]); t = np.load(sys.argv[2]); k_use = int(sys.argv[3]) if len(sys.argv) > 3 else 0
correct, tasks = d['correct'], d['tasks']
cos, G, NS, L, F, R, NV, emb = (t[k] for k in ('cos', 'G', 'NS', 'L', 'F', 'R', 'NV', 'emb'))
if k_use: correct, cos, G, L, F, R, NV, emb = (a[:, :k_use] for a in (correct, cos, G, L, F, R, NV, emb))
P, K = cos.shape
mask = np.arange(G.shape[2])[None, None] < NS[:, None, None]  # (P, 1, MAXS) real slots
mean_term = (F + np.where(mask, G, 0).sum(2) - L) / NS[:, None]  # match_objects
weakest = np.where(mask, G, np.inf).min(2)  # (P, K)
surplus = (NV - NS[:, None]).clip(min=0)  # (P, K) views beyond the named objects
cons = consensus(emb)
def pick(ow, ww, rw, cw, short, xw=0.0):
    return shortlist_pick(cos, cons, ow * mean_term + ww * weakest + rw * R - xw * surplus, short, cw)
print('P', P, 'K', K, 'oracle', correct.any(1).mean().round(3), 'one sample', correct.mean().round(3))
res = []
for ow, ww, cw, short, xw in itertools.product([0.25, 0.5, 1], [0, 0.5, 1, 2], [0.25, 0.5], [4, 8, 16, 32], [0, 0.05]):
    if short > K: continue
    ok = correct[np.arange(P), pick(ow, ww, 1.0, cw, short, xw)]
    res.append((ok.mean(), ow, ww, cw, short, xw, ' '.join(f'{x[:6]}={ok[tasks == x].mean():.2f}' for x in sorted(set(tasks)))))
for r in sorted(res, key=lambda r: -r[0])[:12]: print(f'{r[0]:.3f} o={r[1]} w={r[2]} c={r[3]} short={r[4]} x={r[5]} {r[6]}')
for r in res:
    if r[1:6] == (0.5, 0, 0.25, 4, 0): print('shipped', f'{r[0]:.3f}', r[6])
    if r[1] == 0.5 and r[3] == 0.25 and r[4] == 4 and (r[2] > 0) != (r[5] > 0): print('weakest', r[2], 'extra', r[5], f'{r[0]:.3f}', r[6])
