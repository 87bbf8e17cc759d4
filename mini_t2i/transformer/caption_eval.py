"""How well a transformer reads captions it never trained on: held-back captions and paraphrases.

    mini-t2i eval captions --model runs/emoji_captions_minilm/final --tokens data/tokens/emoji64_gan_val

The measure is the image codes' cross-entropy (nats per code, teacher-forced, no sampling)
of each held-back image under three captions:

    true         its own caption ("dog, twemoji style")
    paraphrase   the same thing in other words, as a person might type it ("puppy, twemoji style")
    empty        the empty caption (classifier-free guidance's unconditional row)

`retained` = (empty - paraphrase) / (empty - true): the share of what the true caption tells the
model about the image that survives the paraphrase (1 = all of it, 0 = the paraphrase is no
better than no caption). Only captions whose images are held back from training are used, so a
model that memorised its training captions gains nothing here.

The paraphrases are written by hand for captions of emoji64's 388 held-back val images
(`mini-t2i data emoji`; the split is a hash of the caption, stable across builds): the name
swapped for a synonym or an everyday wording, the style suffix kept.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from mini_t2i.report import mean_se

# (held-back caption, paraphrase): emoji64's val split.
PARAPHRASES: tuple[tuple[str, str], ...] = (
    ("dog, twemoji style", "puppy, twemoji style"),
    ("airplane, twemoji style", "aeroplane, twemoji style"),
    ("taxi, emojione style", "yellow cab, emojione style"),
    ("bus", "city bus"),
    ("monkey", "ape"),
    ("violin", "fiddle"),
    ("crocodile", "alligator"),
    ("sailboat, emojione style", "sailing boat, emojione style"),
    ("passenger ship, fluent flat style", "cruise ship, fluent flat style"),
    ("pickup truck, fluent flat style", "pick-up truck, fluent flat style"),
    ("locomotive, emojione style", "steam engine, emojione style"),
    ("high speed train, fluent flat style", "bullet train, fluent flat style"),
    ("articulated lorry, emojione style", "semi truck, emojione style"),
    ("crab, twemoji style", "a red crab, twemoji style"),
    ("elephant, emojione style", "grey elephant, emojione style"),
    ("boar, twemoji style", "wild pig, twemoji style"),
    ("mouse face", "head of a mouse"),
    ("weary cat face, emojione style", "tired cat face, emojione style"),
    ("see no evil monkey, emojione style", "monkey covering its eyes, emojione style"),
    ("sloth", "a lazy sloth"),
    ("hedgehog", "a little hedgehog"),
    ("water buffalo, emojione style", "buffalo, emojione style"),
    ("tropical fish", "colourful fish"),
    ("black bird", "crow"),
    ("phoenix", "fire bird"),
    ("broccoli", "a head of broccoli"),
    ("carrot, emojione style", "orange carrot, emojione style"),
    ("cherries, emojione style", "two cherries, emojione style"),
    ("melon, twemoji style", "cantaloupe, twemoji style"),
    ("olive, fluent flat style", "green olive, fluent flat style"),
    ("chestnut", "a brown chestnut"),
    ("bacon, fluent flat style", "strips of bacon, fluent flat style"),
    ("green salad, fluent flat style", "bowl of salad, fluent flat style"),
    ("curry and rice", "rice with curry"),
    ("lollipop", "candy on a stick"),
    ("fish cake with swirl, emojione style", "narutomaki, emojione style"),
    ("red heart, fluent flat style", "love heart, fluent flat style"),
    ("broken heart, fluent flat style", "heartbreak, fluent flat style"),
    ("black heart, emojione style", "dark heart, emojione style"),
    ("crying face, fluent flat style", "sad face with tears, fluent flat style"),
    ("cold face, fluent flat style", "freezing face, fluent flat style"),
    ("hot face, twemoji style", "overheated sweating face, twemoji style"),
    ("woozy face, fluent flat style", "dizzy drunk face, fluent flat style"),
    ("zany face, twemoji style", "crazy face, twemoji style"),
    ("face screaming in fear, twemoji style", "screaming scared face, twemoji style"),
    ("smiling face with heart eyes, emojione style", "face with hearts for eyes, emojione style"),
    ("money mouth face, twemoji style", "face with dollar tongue, twemoji style"),
    ("face with open mouth vomiting", "face throwing up"),
    ("kissing face with smiling eyes", "face blowing a kiss with happy eyes"),
    ("alien, fluent flat style", "extraterrestrial, fluent flat style"),
    ("camera, twemoji style", "photo camera, twemoji style"),
    ("desktop computer, fluent flat style", "pc monitor, fluent flat style"),
    ("scissors, emojione style", "pair of scissors, emojione style"),
    ("key, emojione style", "door key, emojione style"),
    ("toothbrush, twemoji style", "tooth brush, twemoji style"),
    ("shopping cart, emojione style", "supermarket trolley, emojione style"),
    ("toolbox, fluent flat style", "tool box, fluent flat style"),
    ("balloon", "party balloon"),
    ("axe", "hatchet"),
    ("mirror", "looking glass"),
    ("shield", "a knight's shield"),
    ("volcano", "erupting volcano"),
    ("mountain, twemoji style", "snowy peak, twemoji style"),
    ("milky way, twemoji style", "night sky with stars, twemoji style"),
    ("white flower, twemoji style", "white blossom, twemoji style"),
    ("maple leaf, emojione style", "autumn leaf, emojione style"),
    ("glowing star, twemoji style", "shining star, twemoji style"),
    ("white medium star", "white star"),
    ("large yellow circle", "big yellow dot"),
    ("large green square", "big green box"),
    ("orange square, fluent flat style", "orange box, fluent flat style"),
    ("speech balloon, emojione style", "speech bubble, emojione style"),
    ("radioactive, emojione style", "radiation sign, emojione style"),
    ("santa claus, dark skin tone, fluent flat style", "father christmas, dark skin tone, fluent flat style"),
    ("princess", "young queen with a crown"),
    ("mermaid, twemoji style", "sea maiden, twemoji style"),
    ("waving hand, light skin tone, fluent flat style", "hand saying hello, light skin tone, fluent flat style"),
    ("clapping hands, medium-dark skin tone, emojione style", "applause, medium-dark skin tone, emojione style"),
    ("victory hand, fluent flat style", "peace sign hand, fluent flat style"),
    ("raised fist, dark skin tone, fluent flat style", "fist in the air, dark skin tone, fluent flat style"),
)


def _nll_per_code(model, cfg, text_ids: torch.Tensor, codes: torch.Tensor) -> np.ndarray:
    """(N,) mean cross-entropy per code (nats) of each row's codes under its caption."""
    from mini_t2i.transformer.likelihood import image_log_likelihood

    return (-image_log_likelihood(model, cfg, text_ids, codes) / cfg.image_len).numpy()


def paired_difference(a: dict, b: dict, key: str = "true") -> tuple[float, float]:
    """Mean and standard error of b - a per row, for two evaluate_captions results on the same
    shards ("true", "empty" or "paraphrase")."""
    if a["tokens"] != b["tokens"] or a["per_row"]["paraphrase_rows"] != b["per_row"]["paraphrase_rows"]:
        raise ValueError("the two results are not on the same rows; evaluate both models on the same shards")
    return mean_se(np.asarray(b["per_row"][key]) - np.asarray(a["per_row"][key]))


def evaluate_captions(model_path: str | Path, tokens: str | Path, text_tokenizer: str | None = None,
                      paraphrases: tuple[tuple[str, str], ...] = PARAPHRASES, is_verbose: bool = True) -> dict:
    """The module doc's measures for a saved transformer over token shards of held-back images;
    the text tokenizer defaults to the model's training one (its train_config.yaml)."""
    from mini_t2i.config import load_config
    from mini_t2i.text.special_ids import empty_caption
    from mini_t2i.transformer.config import TransformerTrainConfig
    from mini_t2i.transformer.data import load_caption_tokenizer, load_token_data
    from mini_t2i.transformer.model import load_transformer

    model, cfg = load_transformer(model_path)
    train_cfg_path = Path(model_path) / "train_config.yaml"
    if text_tokenizer is None:
        if not train_cfg_path.is_file():
            raise FileNotFoundError(f"{model_path} has no train_config.yaml; pass text_tokenizer")
        text_tokenizer = load_config(TransformerTrainConfig, train_cfg_path).text_tokenizer
    tokenizer = load_caption_tokenizer(text_tokenizer)
    data = load_token_data(tokens, tokenizer, with_metas=False)  # the captions tokenized once
    if (data.grid_size, data.codebook_size) != (cfg.grid_size, cfg.codebook_size):
        raise ValueError(f"{tokens} holds {data.grid_size}x{data.grid_size} grids of {data.codebook_size} "
                         f"codes; the model reads {cfg.grid_size}x{cfg.grid_size} of {cfg.codebook_size}")
    texts = data.texts
    codes = torch.from_numpy(data.image_tokens.astype(np.int64))  # (N, h*w) raster codes
    true = _nll_per_code(model, cfg, data.text_ids, codes)
    empty = _nll_per_code(model, cfg, empty_caption(cfg.text_len).expand(len(texts), -1), codes)

    result = {"model": str(model_path), "tokens": str(tokens), "rows": len(texts),
              "nll_true": mean_se(true), "nll_empty": mean_se(empty),
              "per_row": {"true": true.tolist(), "empty": empty.tolist(), "paraphrase": [], "paraphrase_rows": []}}
    if not paraphrases:  # the held-back captions alone (another data set than the paraphrases')
        if is_verbose:
            print(f"{len(texts)} held-back images: nll/code true {true.mean():.4f}, empty {empty.mean():.4f}")
        return result
    # Rows whose caption has a paraphrase (a caption may have several images).
    index = {t: i for i, t in enumerate(texts)}
    pairs = [(index[c], p) for c, p in paraphrases if c in index]
    if not pairs:
        raise ValueError(f"none of the paraphrased captions is in {tokens}; give the held-back split they were "
                         "written for, or no paraphrases (--no-paraphrases)")
    rows = torch.tensor([r for r, _ in pairs])
    para = _nll_per_code(model, cfg, tokenizer.encode([p for _, p in pairs]), codes[rows])
    gain_true, gain_para = empty[rows] - true[rows], empty[rows] - para
    result.update({
        "paraphrases": len(pairs),
        "paraphrase_rows": {"nll_true": mean_se(true[rows.numpy()]), "nll_paraphrase": mean_se(para),
                            "nll_empty": mean_se(empty[rows.numpy()])},
        # Ratio of the mean gains (a ratio per row is unstable where the caption tells little).
        "retained": float(gain_para.mean() / gain_true.mean()) if gain_true.mean() > 0 else float("nan"),
        "paraphrase_beats_empty": float((para < empty[rows.numpy()]).mean()),
        # Per row, for paired comparisons of two models on the same images (paired_difference).
        "per_row": {"true": true.tolist(), "empty": empty.tolist(), "paraphrase": para.tolist(),
                    "paraphrase_rows": rows.tolist()},
    })
    if is_verbose:
        p = result["paraphrase_rows"]
        print(f"{len(texts)} held-back images: nll/code true {result['nll_true'][0]:.4f}, empty {result['nll_empty'][0]:.4f}")
        print(f"{len(pairs)} paraphrased: true {p['nll_true'][0]:.4f}, paraphrase {p['nll_paraphrase'][0]:.4f} "
              f"± {p['nll_paraphrase'][1]:.4f}, empty {p['nll_empty'][0]:.4f}; retained {result['retained']:.3f}, "
              f"paraphrase better than empty for {result['paraphrase_beats_empty']:.3f}")
    return result
