"""`TextToImagePipeline`: prompt in, the reranker's best images out.

One folder holds every component, so a model is one thing to copy, ship or load::

    PIPE/pipeline.yaml          default sampling settings (PipelineConfig)
    PIPE/README.md              the model card: data, training, scores
    PIPE/text_tokenizer/        tokenizer.json (+ tokenizer_config.json)
    PIPE/vq/                    config.yaml + model.safetensors (the image tokenizer)
    PIPE/transformer/           config.json + model.safetensors (AutoModelForCausalLM loads it)
    PIPE/reranker/              config + model.safetensors (optional: CLIP trained here)
    PIPE/captions.txt           captions of the model's domain, for `describe` (optional)

Generation follows DALL-E 1: sample `num_candidates` images per prompt, score each
against its prompt with the reranker, return the best `num_images`. Candidate j of
prompt i is drawn with seed ``seed + i * num_candidates + j``; each row has its own
random stream (see `transformer.sampler`), so results never depend on batch size.
"""

from __future__ import annotations

import math
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch
from PIL import Image

from mini_t2i.pipeline.config import PipelineConfig  # noqa: F401  (pipeline.yaml; imported from here too)
from mini_t2i.pipeline.folders import PIPELINE_FILE, resolve_model

COMPONENTS = ("text_tokenizer", "vq", "transformer", "reranker")
SAMPLING_KEYS = ("guidance_scale", "guidance_schedule", "temperature", "top_k", "top_p", "decode_weights")
MAX_ROWS_PER_CALL = 65_536  # images sampled in one call (prompts x candidates): bounds the memory of a call
MIN_IMAGE_SIDE = 8  # px: a smaller input image (to edit or describe) carries nothing to keep
MAX_IMAGE_PIXELS = 64 * 2**20  # an in-memory image larger than this is refused (files: open_image's bomb guard)


@dataclass
class PipelineOutput:
    """Images prompt-major, best first within each prompt; `scores` are the reranker's
    scores: its matching head's logits, or CLIP's cosine similarities (nan without a reranker); `seeds`
    regenerate each image."""
    images: list[Image.Image]
    scores: list[float]
    prompts: list[str]
    seeds: list[int]


@dataclass
class PipelinePreview:
    """A partial result while tokens are sampled: rows not yet sampled are grey."""
    images: list[Image.Image]
    progress: float  # share of image tokens sampled, 0..1
    prompts: list[str] = field(default_factory=list)


class TextToImagePipeline:
    """Text tokenizer + transformer + VQ decoder + optional reranker; see the module doc."""

    def __init__(self, tokenizer, transformer, transformer_config, vq, reranker=None,
                 config: PipelineConfig | None = None, card: str = "", captions: Sequence[str] = ()) -> None:
        self.tokenizer = tokenizer
        self._transformer = transformer  # the module, or its weights alone (from_pretrained's light)
        self.transformer_config = transformer_config
        self.vq = vq
        self.reranker = reranker
        self.config = config or PipelineConfig()
        self.card = card  # the model card's text (README.md), kept for save_pretrained
        self.captions = list(captions)  # the `describe` vocabulary (captions.txt)
        self._minilm_tokenizer = None  # transformer_text_ids' MiniLM tokenizer, where the transformer reads one
        self._check_components()

    # ------------------------------------------------------------------ files

    @classmethod
    def from_pretrained(cls, name_or_path: str | Path | None = None, device: str = "cpu",
                        light: bool = True) -> "TextToImagePipeline":
        """Load a pipeline folder, a shipped model by name, or (None) the default model.
        light (the default): the transformer is loaded as its weights (transformer/tensors.py)
        and the reranker's CLIP as rerank/clip_tensors.py's towers, so sampling and reranking
        never import transformers (3-4 s of a fresh process); `pipe.transformer` builds the
        module on first use. light=False loads the modules at once."""
        from mini_t2i.config import load_config
        from mini_t2i.text.tokenizer import TextTokenizer
        from mini_t2i.transformer.model import load_transformer
        from mini_t2i.transformer.tensors import load_transformer_tensors
        from mini_t2i.vq.model import VQModel

        path = resolve_model(name_or_path)
        for part in COMPONENTS[:3]:
            if not (path / part).is_dir():
                raise FileNotFoundError(f"{path} has no {part}/ folder; a pipeline folder holds "
                                        f"{', '.join(COMPONENTS)} (reranker optional)")
        config = load_config(PipelineConfig, path / PIPELINE_FILE)
        # bf16 where the hardware has fast bf16 matmuls (GPUs); fp32 on CPUs, where bf16 is ~100x slower.
        dtype = torch.bfloat16 if str(device).startswith("cuda") else torch.float32
        load = load_transformer_tensors if light else load_transformer
        transformer, transformer_config = load(path / "transformer", device=device, dtype=dtype)
        vq = VQModel.from_pretrained(path / "vq").to(device).eval()
        reranker = None
        if (path / "reranker").is_dir():
            from mini_t2i.rerank.model import Reranker

            reranker = Reranker.from_pretrained(path / "reranker", device=device, light=light)
        from mini_t2i.pipeline.describe import read_captions

        card = (path / "README.md").read_text(encoding="utf-8") if (path / "README.md").is_file() else ""
        return cls(TextTokenizer.from_pretrained(path / "text_tokenizer"), transformer, transformer_config, vq,
                   reranker, config, card, read_captions(path))

    def save_pretrained(self, path: str | Path, half_precision: bool = True) -> Path:
        """Write every component into `path` (see the module doc), through a temporary
        folder renamed into place. The transformer is stored in fp16 when `half_precision`
        (half the size; loading casts back to fp32 on CPUs)."""
        import copy

        from mini_t2i.atomic import atomic_folder
        from mini_t2i.config import save_config
        from mini_t2i.pipeline.describe import write_captions
        from mini_t2i.transformer.model import save_transformer

        transformer = copy.deepcopy(self.transformer).to(torch.float16) if half_precision else self.transformer
        with atomic_folder(path) as tmp:
            self.tokenizer.save_pretrained(tmp / "text_tokenizer")
            self.vq.save_pretrained(tmp / "vq")
            save_transformer(transformer, self.transformer_config, tmp / "transformer")
            if self.reranker is not None:
                self.reranker.save_pretrained(tmp / "reranker")
            save_config(self.config, tmp / PIPELINE_FILE)
            if self.card:
                (tmp / "README.md").write_text(self.card, encoding="utf-8")
            if self.captions:
                write_captions(tmp, self.captions)
        return Path(path)

    def _check_components(self) -> None:
        cfg = self.transformer_config
        mismatches = []
        # A MiniLM-reading transformer takes MiniLM's ids of the same captions (transformer_text_ids).
        vocab = self.tokenizer.vocab_size if cfg.caption_encoder == "ids" else cfg.text_vocab_size
        if (vocab, self.tokenizer.text_len) != (cfg.text_vocab_size, cfg.text_len):
            mismatches.append(f"text tokenizer ({self.tokenizer.vocab_size} ids, length {self.tokenizer.text_len}) vs "
                              f"transformer ({cfg.text_vocab_size}, {cfg.text_len})")
        if (self.vq.config.codebook_size, self.vq.config.grid_size) != (cfg.codebook_size, cfg.grid_size):
            mismatches.append(f"VQ ({self.vq.config.codebook_size} codes, {self.vq.config.grid_size}x{self.vq.config.grid_size}) "
                              f"vs transformer ({cfg.codebook_size}, {cfg.grid_size}x{cfg.grid_size})")
        if self.reranker is not None:
            r = self.reranker.config
            if (r.text_vocab_size, r.text_len) != (self.tokenizer.vocab_size, self.tokenizer.text_len):
                mismatches.append(f"reranker text ({r.text_vocab_size} ids, length {r.text_len}) vs text tokenizer "
                                  f"({self.tokenizer.vocab_size}, {self.tokenizer.text_len})")
        if mismatches:
            raise ValueError("the pipeline's components were not trained together: " + "; ".join(mismatches))

    # ------------------------------------------------------------------ inputs

    @property
    def image_size(self) -> int:
        return self.vq.config.image_size

    @property
    def transformer(self):
        """The transformer module; built here on first use where only its weights were loaded."""
        from mini_t2i.transformer.tensors import TransformerTensors

        if isinstance(self._transformer, TransformerTensors):
            self._transformer = self._transformer.module()
        return self._transformer

    @transformer.setter
    def transformer(self, model) -> None:
        self._transformer = model

    @property
    def device(self) -> torch.device:
        return next(self._transformer.parameters()).device

    def encode_prompts(self, prompt: str | Sequence[str]) -> tuple[list[str], torch.Tensor]:
        """Check prompts and tokenize them: (prompts, (P, text_len) ids). Empty and over-long
        prompts raise ValueError (a long prompt would otherwise lose its end silently)."""
        if isinstance(prompt, (bytes, bytearray)):
            raise TypeError("the prompt is bytes; decode it to a str first (prompt.decode('utf-8'))")
        if not isinstance(prompt, (str, list, tuple)):
            raise TypeError(f"the prompt must be a str or a list of str, got {type(prompt).__name__}")
        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        if not prompts:
            raise ValueError("no prompt given; pass a str or a non-empty list of str")
        for i, text in enumerate(prompts):
            control = next((c for c in text if unicodedata.category(c) == "Cc" and c not in "\t\n\r"), None) \
                if isinstance(text, str) else None
            if control is not None:
                raise ValueError(f"prompt {i} contains the control character U+{ord(control):04X}; remove it "
                                 "(prompts are plain text)")
        lengths = self.tokenizer.token_lengths(prompts)  # raises for empty or non-str prompts
        limit = self.tokenizer.text_len
        for i, n in enumerate(lengths):
            if n > limit:
                raise ValueError(f"prompt {i} ({prompts[i][:40]!r}...) is {n - 2} tokens; this model reads at most "
                                 f"{limit - 2}: shorten it")
        return prompts, self.tokenizer.encode(prompts)

    def transformer_text_ids(self, text_ids: torch.Tensor) -> torch.Tensor:
        """(N, text_len) ids of the pipeline's text tokenizer (what the reranker reads) -> what the
        transformer reads: the same ids, or MiniLM's for caption_encoder "minilm" (text/minilm.py)."""
        if self.transformer_config.caption_encoder != "minilm":
            return text_ids
        if self._minilm_tokenizer is None:  # built once: it reads the package's tokenizer.json
            from mini_t2i.text.minilm import MiniLMTokenizer

            self._minilm_tokenizer = MiniLMTokenizer(self.transformer_config.text_len)
        return self._minilm_tokenizer.from_text_ids(text_ids, self.tokenizer)

    def image_tokens(self, image) -> torch.Tensor:
        """An image (PIL, (H, W, 3) uint8 array, or a file path) -> its (h*w,) VQ codes."""
        from mini_t2i.data.images import open_image, to_rgb_square
        from mini_t2i.pixels import tensor_from_uint8

        if isinstance(image, (str, Path, bytes)):
            image = open_image(image)
        if isinstance(image, np.ndarray):
            if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
                raise ValueError(f"an image array must be (H, W, 3) uint8, got {image.shape} {image.dtype}")
            image = Image.fromarray(image)
        if not isinstance(image, Image.Image):
            raise TypeError(f"image must be a PIL image, an (H, W, 3) uint8 array or a path, got {type(image).__name__}")
        width, height = image.size
        if min(width, height) < MIN_IMAGE_SIDE or width * height > MAX_IMAGE_PIXELS:
            raise ValueError(f"the image is {width}x{height}; give one with sides of at least {MIN_IMAGE_SIDE} px "
                             f"and at most {MAX_IMAGE_PIXELS:,} pixels")
        square = np.array(to_rgb_square(image, self.image_size), dtype=np.uint8)  # writable, for torch
        x = tensor_from_uint8(torch.from_numpy(square[None]).to(self.device))
        return self.vq.encode(x).reshape(-1)

    def sampling_settings(self, **given) -> dict:
        """guidance_scale, guidance_schedule, temperature, top_k, top_p, decode_weights with unset
        (None) ones from pipeline.yaml, checked: the one place sampling values are (the sampler
        checks shapes only). ValueError says what to change. A pipeline.yaml default of
        fp16 / int8 decode weights falls back to fp32 off the CPU; asked for there, it is an error.
        "auto" resolves here (quantize.auto_decode_weights), so the result names the weights used."""
        from mini_t2i.transformer.quantize import auto_decode_weights, check_decode_weights
        from mini_t2i.transformer.sampler import GUIDANCE_SCHEDULES

        cfg = self.config
        given = {k: None for k in SAMPLING_KEYS} | given
        s = {k: (getattr(cfg, k) if v is None else v) for k, v in given.items()}
        if check_decode_weights(s["decode_weights"], allow_auto=True) == "auto":
            s["decode_weights"] = auto_decode_weights(self.device, cfg=self.transformer_config)
        if s["decode_weights"] != "fp32" and self.device.type != "cpu":
            if given["decode_weights"] is not None:
                raise ValueError(f"decode_weights={s['decode_weights']!r} runs on the CPU; this pipeline is on "
                                 f"{self.device}: use decode_weights='fp32'")
            s["decode_weights"] = "fp32"
        if s["guidance_schedule"] not in GUIDANCE_SCHEDULES:
            raise ValueError(f"guidance_schedule={s['guidance_schedule']!r} must be one of {', '.join(GUIDANCE_SCHEDULES)}")
        for k in ("guidance_scale", "temperature", "top_p"):
            if isinstance(s[k], bool) or not isinstance(s[k], (int, float)) or not math.isfinite(s[k]):
                raise ValueError(f"{k}={s[k]!r} must be a finite number")
        if isinstance(s["top_k"], bool) or not isinstance(s["top_k"], int):
            raise ValueError(f"top_k={s['top_k']!r} must be an int (0 = off)")
        if s["guidance_scale"] < 0:
            raise ValueError(f"guidance_scale={s['guidance_scale']} must be >= 0 (1 = no guidance)")
        if s["temperature"] < 0:
            raise ValueError(f"temperature={s['temperature']} must be >= 0 (0 = greedy)")
        if s["top_k"] < 0 or not 0 < s["top_p"] <= 1:
            raise ValueError(f"top_k={s['top_k']} must be >= 0 and top_p={s['top_p']} in (0, 1]")
        return s

    def _plan(self, prompt_count: int, num_images: int, num_candidates: int | None, seed: int) -> tuple[int, list[int]]:
        for name, value in (("num_images", num_images), ("num_candidates", num_candidates)):
            unset = name == "num_candidates" and value is None  # None: the default count below
            if not unset and (not isinstance(value, int) or isinstance(value, bool)):
                raise ValueError(f"{name}={value!r} must be an int")
        if num_images < 1:
            raise ValueError(f"num_images={num_images} must be >= 1")
        if num_candidates is None:
            num_candidates = max(self.config.num_candidates if self.reranker is not None else 1, num_images)
        if prompt_count * num_candidates > MAX_ROWS_PER_CALL:
            raise ValueError(f"{prompt_count} prompt(s) x {num_candidates} candidates = "
                             f"{prompt_count * num_candidates} images in one call; the limit is {MAX_ROWS_PER_CALL} "
                             "(memory grows with it): split the prompts over several calls")
        if num_candidates < num_images:
            raise ValueError(f"num_candidates={num_candidates} < num_images={num_images}: the reranker keeps the "
                             "best num_images of num_candidates, so give num_candidates >= num_images")
        if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
            raise ValueError(f"seed={seed!r} must be an int >= 0")
        return num_candidates, [seed + k for k in range(prompt_count * num_candidates)]

    # ------------------------------------------------------------------ generation

    def decode(self, tokens: torch.Tensor) -> np.ndarray:
        """(N, h*w) codes -> (N, H, W, 3) uint8 images."""
        from mini_t2i.pixels import images_from_tokens

        return images_from_tokens(self.vq, tokens)

    def score(self, images: np.ndarray, text_ids: torch.Tensor) -> np.ndarray:
        """The reranker's score of each image with its row of text ids (`Reranker.score`, or the scorer
        the config names: PipelineConfig.scorer); nan without one."""
        if self.reranker is None:
            return np.full(len(images), np.nan, dtype=np.float32)
        scorer = self.config.scorer(self.reranker, self.tokenizer)
        return scorer.score(images, text_ids.cpu()).float().cpu().numpy()

    def generate_candidates(self, text_ids: torch.Tensor, seeds: Sequence[int], prefix: torch.Tensor | None = None,
                            batch_size: int | None = None, progress: bool = False, with_scores: bool = True, *,
                            guidance_scale: float = 1.0, guidance_schedule: str = "constant",
                            temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0,
                            decode_weights: str = "fp32") -> tuple[np.ndarray, np.ndarray]:
        """Sample, decode and score one image per row: (N, text_len) ids and N seeds ->
        ((N, H, W, 3) uint8 images, (N,) reranker scores). `prefix`: (N, n) codes to keep;
        with_scores=False skips the reranker (scores are nan), e.g. to time generation alone.
        The sampling values are used as given: pass them through `sampling_settings` first."""
        from tqdm.auto import tqdm

        from mini_t2i.transformer.sampler import sample_image_tokens

        batch_size = batch_size or self.config.batch_size
        images, scores = [], []
        starts = range(0, len(seeds), batch_size)
        for start in tqdm(starts, desc="generating", unit="batch", disable=not progress or len(starts) < 2):
            end = start + batch_size
            rows = text_ids[start:end].to(self.device)
            tokens = sample_image_tokens(self._transformer, self.transformer_config, self.transformer_text_ids(rows),
                                         list(seeds[start:end]),
                                         guidance_scale=guidance_scale, guidance_schedule=guidance_schedule,
                                         temperature=temperature, top_k=top_k, top_p=top_p,
                                         decode_weights=decode_weights,
                                         prefix=None if prefix is None else prefix[start:end])
            batch_images = self.decode(tokens)
            images.append(batch_images)
            scores.append(self.score(batch_images, rows) if with_scores
                          else np.full(len(batch_images), np.nan, dtype=np.float32))
        return np.concatenate(images), np.concatenate(scores)

    def _select(self, prompts, images, scores, seeds, num_images, num_candidates) -> PipelineOutput:
        out = PipelineOutput([], [], [], [])
        for i, prompt in enumerate(prompts):
            rows = np.arange(i * num_candidates, (i + 1) * num_candidates)
            if not np.isnan(scores[rows]).any():
                rows = rows[np.argsort(-scores[rows], kind="stable")]  # best first; ties keep seed order
            for r in rows[:num_images]:
                out.images.append(Image.fromarray(images[r]))
                out.scores.append(float(scores[r]))
                out.prompts.append(prompt)
                out.seeds.append(int(seeds[r]))
        return out

    def __call__(self, prompt: str | Sequence[str], num_images: int = 1, num_candidates: int | None = None,
                 guidance_scale: float | None = None, temperature: float | None = None, top_k: int | None = None,
                 top_p: float | None = None, seed: int = 0, batch_size: int | None = None,
                 progress: bool = False, guidance_schedule: str | None = None,
                 decode_weights: str | None = None) -> PipelineOutput:
        """Generate `num_images` images per prompt, each set the reranker's best of
        `num_candidates` samples. Unset sampling arguments take pipeline.yaml's values."""
        prompts, text_ids = self.encode_prompts(prompt)
        sampling = self.sampling_settings(guidance_scale=guidance_scale, guidance_schedule=guidance_schedule,
                                          temperature=temperature, top_k=top_k, top_p=top_p,
                                          decode_weights=decode_weights)
        num_candidates, seeds = self._plan(len(prompts), num_images, num_candidates, seed)
        rows = text_ids.repeat_interleave(num_candidates, dim=0)  # (P * C, text_len)
        images, scores = self.generate_candidates(rows, seeds, batch_size=batch_size, progress=progress, **sampling)
        return self._select(prompts, images, scores, seeds, num_images, num_candidates)

    def stream(self, prompt: str | Sequence[str], num_images: int = 1, num_candidates: int | None = None,
               guidance_scale: float | None = None, temperature: float | None = None, top_k: int | None = None,
               top_p: float | None = None, seed: int = 0, preview_every: int = 32,
               guidance_schedule: str | None = None,
               decode_weights: str | None = None) -> Iterator[PipelinePreview | PipelineOutput]:
        """As `__call__` (same seeds, same result), but yields a `PipelinePreview` of the
        first `num_images` candidates of each prompt every `preview_every` tokens, then the
        `PipelineOutput`. All candidates are sampled in one batch. The arguments are checked
        on the call (ValueError), before the iterator starts any work."""
        prompts, text_ids = self.encode_prompts(prompt)
        sampling = self.sampling_settings(guidance_scale=guidance_scale, guidance_schedule=guidance_schedule,
                                          temperature=temperature, top_k=top_k, top_p=top_p,
                                          decode_weights=decode_weights)
        num_candidates, seeds = self._plan(len(prompts), num_images, num_candidates, seed)
        return self._stream(prompts, text_ids.repeat_interleave(num_candidates, dim=0), seeds, None,
                            num_images, num_candidates, preview_every, sampling)

    def _stream(self, prompts, rows, seeds, prefix, num_images, num_candidates, preview_every, sampling):
        from mini_t2i.transformer.sampler import stream_image_tokens

        cfg = self.transformer_config
        shown = [i * num_candidates + j for i in range(len(prompts)) for j in range(num_images)]
        for tokens in stream_image_tokens(self._transformer, cfg, self.transformer_text_ids(rows.to(self.device)), seeds, **sampling,
                                          prefix=prefix, yield_every=preview_every):
            done = tokens.shape[1]
            if done < cfg.image_len:
                yield PipelinePreview(self._partial_images(tokens[shown]), done / cfg.image_len,
                                      [p for p in prompts for _ in range(num_images)])
        images = self.decode(tokens)
        yield self._select(prompts, images, self.score(images, rows), seeds, num_images, num_candidates)

    def _partial_images(self, tokens: torch.Tensor) -> list[Image.Image]:
        """(B, n) codes, n < h*w -> images with the finished token rows drawn and the rest grey."""
        g = self.vq.config.grid_size
        done_rows = tokens.shape[1] // g
        full = torch.cat([tokens, tokens[:, :1].expand(-1, g * g - tokens.shape[1])], dim=1)  # any valid code
        images = self.decode(full)
        images[:, done_rows * (self.image_size // g):] = 128
        return [Image.fromarray(a) for a in images]

    # ------------------------------------------------------------------ editing

    def complete(self, image, prompt: str | None = None, keep_rows: int | None = None, num_images: int = 1,
                 num_candidates: int | None = None, guidance_scale: float | None = None,
                 temperature: float | None = None, top_k: int | None = None, top_p: float | None = None,
                 seed: int = 0, batch_size: int | None = None, guidance_schedule: str | None = None,
                 decode_weights: str | None = None) -> PipelineOutput:
        """Keep the top `keep_rows` token rows of `image` (default: half) and sample the rest,
        following `prompt` (none: the empty caption, which the model learnt unconditionally).
        With a prompt, the reranker keeps the best `num_images` of `num_candidates`."""
        g = self.vq.config.grid_size
        return self._edit(image, prompt, g // 2 if keep_rows is None else keep_rows, num_images, num_candidates,
                          seed, batch_size, False, dict(guidance_scale=guidance_scale, temperature=temperature,
                                                        top_k=top_k, top_p=top_p, guidance_schedule=guidance_schedule,
                                                        decode_weights=decode_weights))

    def variations(self, image, prompt: str | None = None, num_images: int = 4, keep_rows: int | None = None,
                   num_candidates: int | None = None, guidance_scale: float | None = None,
                   temperature: float | None = None, top_k: int | None = None, top_p: float | None = None,
                   seed: int = 0, batch_size: int | None = None, guidance_schedule: str | None = None,
                 decode_weights: str | None = None) -> PipelineOutput:
        """Images like `image`: its top quarter of token rows (default) is kept, the rest
        re-sampled (following `prompt` when given), and the reranker keeps the candidates
        closest to `prompt`, or without one, to `image` itself (CLIP image similarity)."""
        g = self.vq.config.grid_size
        return self._edit(image, prompt, g // 4 if keep_rows is None else keep_rows, num_images, num_candidates,
                          seed, batch_size, True, dict(guidance_scale=guidance_scale, temperature=temperature,
                                                       top_k=top_k, top_p=top_p, guidance_schedule=guidance_schedule,
                                                        decode_weights=decode_weights))

    def _edit(self, image, prompt, keep_rows, num_images, num_candidates, seed, batch_size, rank_by_image, options):
        from mini_t2i.text.special_ids import empty_caption

        g = self.vq.config.grid_size
        if not 0 <= keep_rows <= g:
            raise ValueError(f"keep_rows={keep_rows} must be in 0..{g} (the token grid is {g}x{g})")
        if prompt:
            prompts, text_ids = self.encode_prompts(prompt)
            if len(prompts) != 1:
                raise ValueError("give one prompt for an edit")
        else:
            prompts, text_ids = [""], empty_caption(self.tokenizer.text_len)[None]
        can_rank = self.reranker is not None and (bool(prompt) or rank_by_image)
        sampling = self.sampling_settings(**options)
        num_candidates, seeds = self._plan(1, num_images, num_candidates if can_rank else num_images, seed)
        codes = self.image_tokens(image)  # (h*w,)
        prefix = codes[: keep_rows * g][None].expand(num_candidates, -1)  # (C, keep_rows * g)
        rows = text_ids.expand(num_candidates, -1)
        images, scores = self.generate_candidates(rows, seeds, prefix=prefix, batch_size=batch_size, **sampling)
        if can_rank and not prompt:  # rank by closeness to the input image
            from mini_t2i.pixels import pixels_from_uint8

            size = self.reranker.config.image_size
            with torch.no_grad():
                ref = self.reranker.image_embeds(pixels_from_uint8(self.decode(codes[None]), size).to(self.device))
                cand = self.reranker.image_embeds(pixels_from_uint8(images, size).to(self.device))
            scores = (cand @ ref.T).squeeze(1).float().cpu().numpy()
        elif not can_rank:
            scores = np.full(len(images), np.nan, dtype=np.float32)
        return self._select(prompts, images, scores, seeds, num_images, num_candidates)
