"""Assemble a pipeline folder from trained components and write its model card.

    mini-t2i pipeline assemble --config configs/pipeline_shapes64.yaml
    mini-t2i eval shapes --model mini_t2i/pretrained/shapes64 --out PIPE/eval.json   # then:
    mini-t2i pipeline card mini_t2i/pretrained/shapes64                              # card with scores

The card (README.md, the Hugging Face model-card layout) says what the model was
trained on, how, how long and on what hardware, and how it scores: everything a
user needs to decide whether to trust it, regenerated from files, never typed in.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field, replace
from pathlib import Path

from mini_t2i.pipeline.folders import PIPELINE_FILE
from mini_t2i.pipeline.pipeline import PipelineConfig

EVAL_FILE = "eval.json"


@dataclass
class ModelCardInfo:
    title: str = "mini-t2i model"
    summary: str = ""  # one paragraph: what it draws
    data: str = ""  # what it was trained on (and what it never saw)
    license: str = "apache-2.0"
    hardware: str = ""  # e.g. "2-core AMD EPYC CPU, fp32"
    training: list[str] = field(default_factory=list)  # one line per stage: command, wall-clock time
    notes: list[str] = field(default_factory=list)  # limitations, things to know
    # "## How it was chosen": paragraphs of markdown (a bake-off table, a learning curve), and
    # images copied into the folder beside README.md and shown there (paths to PNG files)
    design: list[str] = field(default_factory=list)
    figures: list[str] = field(default_factory=list)


@dataclass
class PipelineAssembleConfig:
    out: str = "runs/pipeline"
    transformer: str = ""  # a trained transformer folder (runs/.../final)
    reranker: str = ""  # a trained reranker folder; empty: no reranking
    vq: str = ""  # empty: the VQ the transformer was trained with (its train_config.yaml)
    text_tokenizer: str = ""  # empty: the transformer's text tokenizer
    half_precision: bool = True  # store the transformer in fp16
    pipeline: PipelineConfig = field(default_factory=PipelineConfig)
    card: ModelCardInfo = field(default_factory=ModelCardInfo)
    # A card.yaml to take the card from instead of `card` (usually the folder's own, which is kept
    # up to date as results come in, so a re-assemble reproduces the current card); its figures may
    # be named relative to its folder.
    card_file: str = ""

    def __post_init__(self) -> None:
        if not self.transformer:
            raise ValueError("transformer is not set: give the folder of a trained transformer (runs/.../final)")


def assemble_pipeline(cfg: PipelineAssembleConfig) -> Path:
    """Load the trained components, check they fit together, save them as one pipeline
    folder with its card (plus card.yaml, so `write_card` can redo it); returns the folder."""
    from mini_t2i.config import load_config, save_config
    from mini_t2i.pipeline.pipeline import TextToImagePipeline
    from mini_t2i.text.tokenizer import TextTokenizer
    from mini_t2i.transformer.model import load_transformer
    from mini_t2i.transformer.config import TransformerTrainConfig
    from mini_t2i.vq.model import VQModel

    card, card_root = cfg.card, None
    if cfg.card_file:  # read before `out` is replaced: it is often out's own card.yaml
        if not Path(cfg.card_file).is_file():
            raise FileNotFoundError(f"card_file {cfg.card_file} does not exist; give a card.yaml or use a `card` block")
        card, card_root = load_config(ModelCardInfo, cfg.card_file), Path(cfg.card_file).parent
    figures = {}
    for figure in card.figures:  # copied in, so that the folder's card shows them anywhere
        source = Path(figure)
        if not source.is_file() and card_root is not None:
            source = card_root / figure
        if not source.is_file():
            raise FileNotFoundError(f"card figure {figure} does not exist; make it first or drop it from card.figures")
        figures[source.name] = source.read_bytes()
    train_cfg_path = Path(cfg.transformer) / "train_config.yaml"
    train_cfg = load_config(TransformerTrainConfig, train_cfg_path) if train_cfg_path.is_file() else None
    vq_path = cfg.vq or (train_cfg.vq_model if train_cfg else "")
    text_path = cfg.text_tokenizer or (train_cfg.text_tokenizer if train_cfg else "")
    if not vq_path or not text_path:
        raise ValueError(f"{cfg.transformer} has no train_config.yaml naming its VQ and text tokenizer; set vq and "
                         "text_tokenizer in the assemble config")
    if text_path == "minilm":
        raise ValueError(f"{cfg.transformer} reads MiniLM's captions (caption_encoder: minilm); set text_tokenizer to "
                         "the reranker's text tokenizer folder, which the pipeline's prompts are encoded with")
    transformer, transformer_cfg = load_transformer(cfg.transformer)
    reranker = None
    if cfg.reranker:
        from mini_t2i.rerank.model import Reranker

        reranker = Reranker.from_pretrained(cfg.reranker)
    pipe = TextToImagePipeline(TextTokenizer.from_pretrained(text_path), transformer, transformer_cfg,
                               VQModel.from_pretrained(vq_path).eval(), reranker, cfg.pipeline)
    out = Path(cfg.out)
    from mini_t2i.pipeline.describe import CAPTIONS_FILE, read_captions

    pipe.captions = read_captions(out)  # the describe vocabulary survives a re-assemble
    # So do the folder's own files (eval.json, fidelity results, figures): everything at its top level
    # that saving the pipeline does not write.
    written = {PIPELINE_FILE, "README.md", "card.yaml", CAPTIONS_FILE}
    keep = ({f.name: f.read_bytes() for f in out.iterdir() if f.is_file() and f.name not in written}
            if out.is_dir() else {})
    pipe.save_pretrained(out, half_precision=cfg.half_precision)
    for name, data in {**keep, **figures}.items():
        (out / name).write_bytes(data)
    save_config(replace(card, figures=list(figures)), out / "card.yaml")
    write_card(out)
    return out


def _score_table(result: dict) -> list[str]:
    """Markdown rows of an `eval shapes` result: per task, per split, with the ceilings."""
    lines = []
    for split, r in result.get("splits", {}).items():
        lines += [f"**{split}** ({r['count']} prompts, {r['num_candidates']} candidates each, "
                  f"sampling {json.dumps(r['sampling'])})", "",
                  "| task | ground truth | VQ reconstruction | one sample | reranked best | any candidate |",
                  "|---|---|---|---|---|---|"]
        columns = ["ground_truth", "reconstructions", "one_sample", "reranked", "oracle"]
        for task in list(r["ground_truth"]["tasks"]) + ["overall"]:
            cells = []
            for c in columns:
                s = r.get(c)
                if s is None:
                    cells.append("-")
                    continue
                v = s["overall"] if task == "overall" else s["tasks"].get(task, {}).get("accuracy")
                cells.append("-" if v is None else (f"**{v:.3f}**" if task == "overall" else f"{v:.3f}"))
            lines.append(f"| {task} | " + " | ".join(cells) + " |")
        lines.append("")
    return lines


def write_card(folder: str | Path) -> Path:
    """(Re)write FOLDER/README.md from card.yaml, the components and eval.json if present."""
    from mini_t2i.config import load_config
    from mini_t2i.transformer.config import TransformerConfig

    folder = Path(folder)
    info = load_config(ModelCardInfo, folder / "card.yaml") if (folder / "card.yaml").is_file() else ModelCardInfo()
    pipe_cfg = load_config(PipelineConfig, folder / "pipeline.yaml")
    t = load_config(TransformerConfig, folder / "transformer" / "transformer.yaml")
    sizes = {p.name: sum(f.stat().st_size for f in p.rglob("*") if f.is_file()) / 1e6
             for p in sorted(folder.iterdir()) if p.is_dir()}
    name = folder.name
    lines = ["---", f"license: {info.license}", "library_name: mini-t2i", "pipeline_tag: text-to-image",
             "tags: [text-to-image, vqgan, autoregressive, mini-t2i]", "---", "",
             f"# {info.title}", "", info.summary, "",
             "```python", "from mini_t2i import TextToImagePipeline", "",
             f'pipe = TextToImagePipeline.from_pretrained("{name}")',
             'out = pipe("a red circle above a blue square", num_images=4, seed=0)',
             "out.images[0].save(\"best.png\")  # out.scores: the reranker's scores, best first", "```", "",
             f"or `mini-t2i generate \"PROMPT\" --model {name} --num-images 4 --out DIR`.", "",
             "## Components", "",
             f"- text tokenizer: {t.text_vocab_size} ids, captions of at most {t.text_len - 2} tokens",
             f"- VQ image tokenizer: {t.grid_size}x{t.grid_size} tokens of {t.codebook_size} codes",
             f"- transformer: Llama, preset `{t.preset}` ({t.shape[0]} layers, width {t.shape[1]}, "
             f"{t.shape[2]} heads), fp16 weights" + (
                 f"; block-factorized: one main position per {t.block_size}x{t.block_size} block of codes, a "
                 f"{t.depth_layers}-layer depth transformer writes each block's {t.block_len} codes"
                 if t.image_order == "blocks" else ""),
             "- reranker: " + ("CLIP trained here on the training captions" if (folder / "reranker").is_dir()
                               else "none (images are returned in seed order)"),
             "- sizes on disk (MB): " + ", ".join(f"{k} {v:.1f}" for k, v in sizes.items()),
             f"- default sampling (pipeline.yaml): {pipe_cfg.num_candidates} candidates, top-k {pipe_cfg.top_k}, "
             f"top-p {pipe_cfg.top_p}, temperature {pipe_cfg.temperature}, guidance {pipe_cfg.guidance_scale} "
             f"({pipe_cfg.guidance_schedule}), {pipe_cfg.decode_weights} decode weights", "",
             "## Training data", "", info.data, "",
             "## Training", "", f"Hardware: {info.hardware}", ""]
    lines += [f"- {line}" for line in info.training] + [""]
    if info.design or info.figures:
        lines += ["## How it was chosen", ""]
        for paragraph in info.design:
            lines += [paragraph, ""]
        lines += [f"![{Path(f).stem}]({Path(f).name})" for f in info.figures] + [""] * bool(info.figures)
    if (folder / EVAL_FILE).is_file():
        result = json.loads((folder / EVAL_FILE).read_text())
        lines += ["## Scores", "", result.get("description", ""), ""] + _score_table(result)
    if info.notes:
        lines += ["## Limitations", ""] + [f"- {n}" for n in info.notes] + [""]
    path = folder / "README.md"
    path.write_text("\n".join(lines).rstrip() + "\n", encoding="utf-8")
    return path
