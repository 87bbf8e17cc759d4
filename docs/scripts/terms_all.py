"""Per-candidate cosine, embeddings, object and relation terms for every candidate (no shortlist): for offline sweeps."""
import sys, numpy as np, torch
torch.set_num_threads(1)
from mini_t2i.pipeline.pipeline import TextToImagePipeline
from mini_t2i.rerank.objects import CompositionScorer, parse_objects
src, per, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
d = np.load(src); images, texts = d['images'], d['texts']
pipe = TextToImagePipeline.from_pretrained('shapes64')
obj = CompositionScorer(pipe.reranker, pipe.tokenizer, 1.0, 0.0, 0.0)
rel = CompositionScorer(pipe.reranker, pipe.tokenizer, 0.0, 1.0, 0.0)
emb = pipe.reranker.embed_images(images).numpy()
txt = pipe.reranker.embed_texts(pipe.encode_prompts([str(t) for t in texts])[1]).numpy()
cos = (emb.reshape(len(texts), per, -1) * txt[:, None]).sum(-1)
O, R = [], []
for i, t in enumerate(texts):
    ims = images[i*per:(i+1)*per]; objs = parse_objects(str(t))
    O.append(obj.view_terms(ims, objs)); R.append(rel.view_terms(ims, objs) if objs.axis else np.zeros(per))
    if i % 50 == 0: print(i, flush=True)
np.savez(out, cos=cos, O=np.array(O), R=np.array(R), emb=emb.reshape(len(texts), per, -1))
