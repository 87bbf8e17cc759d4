import sys, itertools, numpy as np
from shortlist import consensus, shortlist_pick
d = np.load(sys.argv[1]); t = np.load(sys.argv[2]); per_use = int(sys.argv[3]) if len(sys.argv) > 3 else 0
correct, tasks = d['correct'], d['tasks']
cos, O, R, emb = t['cos'], t['O'], t['R'], t['emb']
if per_use: correct, cos, O, R, emb = correct[:, :per_use], cos[:, :per_use], O[:, :per_use], R[:, :per_use], emb[:, :per_use]
P, K = cos.shape
cons = consensus(emb)
print('oracle', correct.any(1).mean(), 'K', K)
def pick(ow, rw, cw, short):
    return shortlist_pick(cos, cons, ow * O + rw * R, short, cw)
res = []
for ow, rw, cw, short in itertools.product([0, 0.25, 0.5, 1, 2], [0, 1], [0, 0.25, 0.5, 1], [4, 8, 16, 32]):
    if short > K: continue
    ok = correct[np.arange(P), pick(ow, rw, cw, short)]
    res.append((ok.mean(), ow, rw, cw, short, ' '.join(f'{x[:6]}={ok[tasks == x].mean():.2f}' for x in sorted(set(tasks)))))
for r in sorted(res, key=lambda r: -r[0])[:25]: print(f'{r[0]:.3f} o={r[1]} r={r[2]} c={r[3]} short={r[4]} {r[5]}')
for r in res:
    if (r[1], r[2], r[3], r[4]) in [(0, 1, 0, 4), (0, 0, 0, 4), (0.5, 1, 0.25, 4), (0.5, 1, 0.5, 4)]: print('ref', f'{r[0]:.3f}', r[1:])
