"""Does emoji64 know the sheet's names? The teacher-forced NLL per code of a train image the sheet
asks for ("dog face", Google's) beside the NLL of the model's own samples for three sheet captions at
temperature 1.0 / 0.7 / 0.4 (top-k 64, no guidance), and a strip of the image and 4 samples a
temperature per caption (runs/probe_dog.png).
    python docs/scripts/name_probe.py        # needs data/emoji_more64 (mini-t2i data emoji ...)"""
import numpy as np, torch
from PIL import Image
torch.set_num_threads(2)
from mini_t2i.pipeline.pipeline import TextToImagePipeline
from mini_t2i.transformer.caption_eval import _nll_per_code
from mini_t2i.transformer.sampler import sample_image_tokens
pipe = TextToImagePipeline.from_pretrained('mini_t2i/pretrained/emoji64')
from mini_t2i.transformer.model import load_transformer
mm, cfg = load_transformer('mini_t2i/pretrained/emoji64/transformer'); mm.float(); m = pipe._transformer
rows = []
for cap, f in (('dog face', '00549'), ('green apple', None), ('birthday cake, twemoji style', None)):
    _, ids = pipe.encode_prompts([cap]); tids = pipe.transformer_text_ids(ids)
    line = []
    if f:
        im = np.asarray(Image.open(f'data/emoji_more64/train/{f}.png').convert('RGB'))
        codes = pipe.image_tokens(im).reshape(1, -1)
        print(cap, 'train image nll/code', _nll_per_code(mm, cfg, tids, codes))
        line.append(im)
    for T in (1.0, 0.7, 0.4):
        toks = sample_image_tokens(m, cfg, tids.expand(8, -1), list(range(8)), temperature=T, top_k=64)
        nll = _nll_per_code(mm, cfg, tids.expand(8, -1), toks.reshape(8, -1))
        print(cap, 'T', T, 'sample nll/code', nll.round(2))
        line += list(pipe.decode(toks)[:4])
    rows.append(np.concatenate(line + [np.zeros((64, 64, 3), np.uint8)] * (13 - len(line)), 1))
Image.fromarray(np.concatenate(rows, 0)).resize((13 * 128, 128 * len(rows)), Image.NEAREST).save('runs/probe_dog.png')
