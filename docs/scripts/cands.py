"""Draw and keep candidates of a pipeline for val prompts with the checker's verdicts (evaluation only)."""
import sys, numpy as np, torch
torch.set_num_threads(1)
from mini_t2i.pipeline.pipeline import TextToImagePipeline
from mini_t2i.pipeline.rerank_eval import _sample
from mini_t2i.rerank.diagnose import shapes_scenes
from mini_t2i.shapes.checker import check_image
pipeline, split, count, per, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
pipe = TextToImagePipeline.from_pretrained(pipeline)
_, metas, texts = shapes_scenes(split, count, 0, 64)
images = _sample(pipe, texts, per)
correct = np.array([check_image(im, metas[k // per]) for k, im in enumerate(images)], bool).reshape(count, per)
np.savez_compressed(out, images=images, correct=correct, texts=np.array(texts), tasks=np.array([m["task"] for m in metas]))
print(out, correct.mean(), correct.any(1).mean())
