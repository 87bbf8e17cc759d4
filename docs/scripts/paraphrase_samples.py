"""Samples for paraphrased held-back captions (transformer/caption_eval.py's PARAPHRASES), drawn and
reranked as a user's prompt is (best of the pipeline's candidates, reranked by the prompt itself),
then scored by R-precision against the true caption among 100 of the 388 val captions (the
reranker's cosine; the same draw of rivals for every pipeline). Beside it the same for the true
caption. python docs/scripts/paraphrase_samples.py PIPE [PIPE ...]"""
import json, sys, numpy as np, torch
torch.set_num_threads(1)
from mini_t2i.pipeline.pipeline import TextToImagePipeline
from mini_t2i.transformer.caption_eval import PARAPHRASES
val = sorted({json.loads(l)['text'] for l in open('data/emoji64/val/metadata.jsonl')})
pairs = [(c, p) for c, p in PARAPHRASES if c in val]
index = {t: i for i, t in enumerate(val)}
rng = np.random.default_rng(0)
rivals = []
for c, _ in pairs:
    o = rng.choice(len(val) - 1, 99, replace=False); rivals.append(o + (o >= index[c]))
out = {}
for path in sys.argv[1:]:
    pipe = TextToImagePipeline.from_pretrained(path)
    s = pipe.sampling_settings(); n = pipe.config.num_candidates
    hits = {}
    for kind, prompts in (('true', [c for c, _ in pairs]), ('paraphrase', [p for _, p in pairs])):
        _, ids = pipe.encode_prompts(prompts)
        images, scores = pipe.generate_candidates(ids.repeat_interleave(n, 0), list(range(len(pairs) * n)), **s)
        best = images[scores.reshape(len(pairs), n).argmax(1) + np.arange(len(pairs)) * n]
        sims = pipe.reranker.score_matrix(best, pipe.tokenizer.encode(val)).numpy()
        h = np.array([sims[i, index[c]] > sims[i, rivals[i]].max() for i, (c, _) in enumerate(pairs)])
        hits[kind] = h.tolist()
        print(path, kind, f'{h.mean():.3f} ± {h.std() / len(h) ** .5:.3f}', flush=True)
    out[path] = hits
a, b = (np.array(out[p]['paraphrase'], float) for p in sys.argv[1:3]) if len(sys.argv) > 2 else (None, None)
if a is not None:
    d = b - a; print('paraphrase, second - first', f'{d.mean():+.3f} ± {d.std(ddof=1) / len(d) ** .5:.3f}', 'n', len(d))
json.dump(out, open('runs/paraphrase_samples.json', 'w'))
