"""What the demo's buttons do, apart from Gradio: load models, check inputs, run the pipeline.

Every handler takes the values of the UI controls (named as the pipeline's arguments)
and raises `DemoInputError` with a message meant for the user when one is out of range;
`mini_t2i.demo.ui` turns that into a `gr.Error`. Nothing here imports gradio, so the
handlers are tested directly as well as through a real server.
"""

from __future__ import annotations

import contextlib
import math
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

from PIL import Image

SHOW_SIZE = 256  # px: images are enlarged (nearest neighbour, pixels stay crisp) for the gallery


class DemoInputError(ValueError):
    """A control's value the demo refuses; the message says which and what is allowed."""


@dataclass
class DemoLimits:
    """Bounds on what one request may ask for, so parallel users cannot exhaust memory."""
    max_images: int = 16
    max_candidates: int = 64
    max_prompt_chars: int = 400
    max_guidance: float = 10.0
    max_temperature: float = 2.0
    max_seed: int = 2**31 - 1
    max_image_pixels: int = 4096 * 4096  # uploads: larger images are refused before decoding
    min_image_side: int = 8
    max_captions: int = 20000  # describe: captions ranked at once
    max_top: int = 20
    max_file_size: str = "20mb"  # uploads larger than this are refused by the server before any decoding
    prompt_filter: bool = True  # refuse prompts with a blocklist term (prompt_filter.py); False: off
    blocklist: str = ""  # a blocklist file; empty: the shipped mini_t2i/demo/blocklist.txt


@dataclass
class GenerateUpdate:
    """One update of the generate view: gallery items (image, caption), status text, and
    the downloadable grid once the images are final."""
    gallery: list[tuple[Image.Image, str]]
    status: str
    grid_path: str | None = None
    done: bool = False


class ModelPool:
    """Pipelines by name, loaded on first use and kept: the shipped models, plus any given."""

    def __init__(self, pipelines: dict | None = None, names: Sequence[str] | None = None, device: str = "cpu",
                 decode_weights: str | None = None) -> None:
        from mini_t2i.pipeline.folders import DEFAULT_MODEL, shipped_models
        from mini_t2i.transformer.quantize import check_decode_weights

        self._pipes = dict(pipelines or {})
        if names is None:  # every shipped model, the default one first
            names = sorted(shipped_models(), key=lambda n: n != DEFAULT_MODEL)
        self.names = list(self._pipes) + [n for n in names if n not in self._pipes]
        if not self.names:
            raise ValueError("no models to serve: give a pipeline or a model name/folder")
        self.device = device
        # None: each pipeline.yaml's own; else every model served decodes with these weights.
        self.decode_weights = decode_weights and check_decode_weights(decode_weights, allow_auto=True)
        for pipe in self._pipes.values():
            self._configure(pipe)
        self._lock = threading.Lock()
        self.stopped_early = 0  # generations ended by the stop button (or a client that left)
        self.running = 0  # actions under way now, and the most ever at once (the queue keeps it at
        self.peak_running = 0  # its concurrency limit)

    @contextlib.contextmanager
    def busy(self):
        """Count an action while it runs (see `running`)."""
        with self._lock:
            self.running += 1
            self.peak_running = max(self.peak_running, self.running)
        try:
            yield
        finally:
            with self._lock:
                self.running -= 1

    def get(self, name: str | None):
        name = name or self.names[0]
        if name not in self.names:
            raise DemoInputError(f"unknown model {name!r}; this demo serves {', '.join(self.names)}")
        with self._lock:
            if name not in self._pipes:
                from mini_t2i.pipeline.pipeline import TextToImagePipeline

                self._pipes[name] = self._configure(TextToImagePipeline.from_pretrained(name, device=self.device))
            return self._pipes[name]

    def _configure(self, pipe):
        if self.decode_weights:
            pipe.config.decode_weights = self.decode_weights
        return pipe

    def examples(self, per_model: int = 4) -> list[list[str]]:
        """[prompt, model] rows: the first examples of each model's pipeline.yaml."""
        return [[prompt, name] for name in self.names for prompt in self.get(name).config.examples[:per_model]]


# ---------------------------------------------------------------------- input checks

def _number(value) -> float | None:
    """A control's value as a float, or None when it is not a number at all."""
    if isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _int(name: str, value, low: int, high: int) -> int:
    number = _number(value)
    if number is None or not number.is_integer():
        raise DemoInputError(f"{name} must be a whole number from {low} to {high}, got {value!r}")
    if not low <= number <= high:
        raise DemoInputError(f"{name}={int(number)} is out of range: use {low} to {high}")
    return int(number)


def _float(name: str, value, low: float, high: float, low_open: bool = False) -> float:
    number = _number(value)
    if number is None or not math.isfinite(number):
        raise DemoInputError(f"{name} must be a number from {low} to {high}, got {value!r}")
    value = number
    if value > high or value < low or (low_open and value == low):
        raise DemoInputError(f"{name}={value:g} is out of range: use {'more than ' if low_open else ''}{low:g} "
                             f"to {high:g}")
    return value


def check_prompt(prompt, limits: DemoLimits, required: bool = True) -> str:
    if not isinstance(prompt, (str, type(None))):
        raise DemoInputError(f"the prompt must be text, got {type(prompt).__name__}")
    prompt = (prompt or "").strip()
    if required and not prompt:
        raise DemoInputError("the prompt is empty: describe the image you want, e.g. \"a red circle\"")
    if len(prompt) > limits.max_prompt_chars:
        raise DemoInputError(f"the prompt is {len(prompt)} characters; keep it under {limits.max_prompt_chars}")
    if prompt and limits.prompt_filter:
        from mini_t2i.demo.prompt_filter import PromptRefused

        try:
            _prompt_filter(limits.blocklist).check(prompt)
        except PromptRefused as exc:
            raise DemoInputError(str(exc)) from None
    return prompt


_FILTERS: dict[str, object] = {}


def _prompt_filter(blocklist: str):
    """The PromptFilter of a blocklist file (the shipped one for ""), read once."""
    from mini_t2i.demo.prompt_filter import DEFAULT_BLOCKLIST, PromptFilter

    if blocklist not in _FILTERS:
        _FILTERS[blocklist] = PromptFilter.from_file(blocklist or DEFAULT_BLOCKLIST)
    return _FILTERS[blocklist]


def check_sampling(pipe, limits: DemoLimits, num_images, num_candidates, guidance_scale, temperature, top_k, top_p,
                   seed) -> dict:
    """The generation controls as pipeline keyword arguments, each checked against the demo's
    own range (DemoLimits); how they fit together (num_candidates >= num_images) is the
    pipeline's to check, and its ValueError reaches the user as a DemoInputError."""
    return dict(num_images=_int("num_images", num_images, 1, limits.max_images),
                num_candidates=_int("num_candidates", num_candidates, 1, limits.max_candidates),
                guidance_scale=_float("guidance_scale", guidance_scale, 1.0, limits.max_guidance),
                temperature=_float("temperature", temperature, 0.0, limits.max_temperature),
                top_k=_int("top_k", top_k, 0, pipe.transformer_config.codebook_size),
                top_p=_float("top_p", top_p, 0.0, 1.0, low_open=True),
                seed=_int("seed", seed, 0, limits.max_seed))


def load_upload(path, limits: DemoLimits) -> Image.Image:
    """An uploaded image file -> RGB PIL image; odd modes (palette, 16-bit, alpha, CMYK) are
    converted, bad files and extreme sizes refused with a message."""
    from mini_t2i.data.images import ImageError, open_image, to_rgb

    if path is None or path == "":
        raise DemoInputError("no image: upload one first")
    if isinstance(path, Image.Image):
        image = path
    else:
        try:
            image = open_image(Path(path), max_pixels=limits.max_image_pixels)
        except ImageError as exc:
            raise DemoInputError(f"cannot use that image: {exc}") from None
    if min(image.size) < limits.min_image_side:
        raise DemoInputError(f"the image is {image.size[0]}x{image.size[1]} px; give one at least "
                             f"{limits.min_image_side} px on each side")
    try:
        return to_rgb(image)
    except ImageError as exc:
        raise DemoInputError(f"cannot use that image: {exc}") from None


# ---------------------------------------------------------------------- handlers

def _shown(image: Image.Image) -> Image.Image:
    return image.resize((SHOW_SIZE, SHOW_SIZE), Image.NEAREST) if image.size[0] < SHOW_SIZE else image


def _caption(rank: int, score: float, seed: int) -> str:
    score_text = "" if math.isnan(score) else f" · score {score:.3f}"
    return f"#{rank}{score_text} · seed {seed}"


def _save_grid(images: list[Image.Image], out_dir: Path) -> str:
    from mini_t2i.pixels import image_grid

    out_dir.mkdir(parents=True, exist_ok=True)
    handle = tempfile.NamedTemporaryFile(prefix="grid_", suffix=".png", dir=out_dir, delete=False)
    handle.close()
    image_grid([_shown(im) for im in images]).save(handle.name)
    return handle.name


class DemoHandlers:
    """The demo's actions over a `ModelPool`; see the module doc."""

    def __init__(self, pool: ModelPool, limits: DemoLimits | None = None, out_dir: str | Path | None = None) -> None:
        self.pool = pool
        self.limits = limits or DemoLimits()
        self.out_dir = Path(out_dir or tempfile.mkdtemp(prefix="mini_t2i_demo_"))
        self._caption_indexes: dict[str, object] = {}  # model -> CaptionIndex of its own captions

    def generate(self, model, prompt, num_images, num_candidates, guidance_scale, temperature, top_k, top_p, seed,
                 preview_every: int | None = None) -> Iterator[GenerateUpdate]:
        """Stream previews (the first candidates, rows filled in as tokens are sampled), then
        the ranked images with their scores and seeds, and a grid PNG to download."""
        pipe = self.pool.get(model)
        prompt = check_prompt(prompt, self.limits)
        args = check_sampling(pipe, self.limits, num_images, num_candidates, guidance_scale, temperature, top_k,
                              top_p, seed)
        every = preview_every or pipe.vq.config.grid_size  # one token row per preview
        t0 = time.perf_counter()
        try:  # the pipeline checks the prompt (tokens) and how the values fit together, before any work
            items = pipe.stream(prompt, preview_every=every, **args)
        except ValueError as exc:
            raise DemoInputError(str(exc)) from None
        finished = False
        try:
            with self.pool.busy():
                yield from self._stream(pipe, items, args, t0)
            finished = True
        finally:
            if not finished:
                self.pool.stopped_early += 1

    def _stream(self, pipe, items, args, t0) -> Iterator[GenerateUpdate]:
        """The pipeline's stream as demo updates (previews, then the ranked images)."""
        first_preview = None
        for item in items:
            elapsed = time.perf_counter() - t0
            if hasattr(item, "progress"):  # a PipelinePreview
                first_preview = first_preview or elapsed
                yield GenerateUpdate([(_shown(im), f"sampling {item.progress:.0%}") for im in item.images],
                                     f"Sampling {args['num_candidates']} candidates: {item.progress:.0%} "
                                     f"({elapsed:.1f} s)")
                continue
            gallery = [(_shown(im), _caption(k + 1, s, sd))
                       for k, (im, s, sd) in enumerate(zip(item.images, item.scores, item.seeds))]
            ranked = "ranked by the reranker" if pipe.reranker is not None else "no reranker"
            status = (f"{len(item.images)} of {args['num_candidates']} candidates, {ranked}; "
                      f"{elapsed:.1f} s in all, first preview after {first_preview or elapsed:.1f} s")
            yield GenerateUpdate(gallery, status, _save_grid(item.images, self.out_dir), done=True)

    def model_view(self, model, image) -> Image.Image:
        """An uploaded image as the model reads it: RGB, centre square, at its resolution."""
        from mini_t2i.data.images import to_rgb_square

        pipe = self.pool.get(model)
        return _shown(to_rgb_square(load_upload(image, self.limits), pipe.image_size))

    def edit(self, model, image, mode, prompt, keep_rows, num_images, num_candidates, seed) -> tuple[list, str]:
        """"variations" or "complete" of an uploaded image: gallery items and status text."""
        pipe = self.pool.get(model)
        if mode not in ("variations", "complete"):
            raise DemoInputError(f"mode must be 'variations' or 'complete', got {mode!r}")
        picture = load_upload(image, self.limits)
        prompt = check_prompt(prompt, self.limits, required=False) or None
        grid = pipe.vq.config.grid_size
        kwargs = dict(keep_rows=_int("keep_rows", keep_rows, 0, grid),
                      num_images=_int("num_images", num_images, 1, self.limits.max_images),
                      num_candidates=_int("num_candidates", num_candidates, 1, self.limits.max_candidates),
                      seed=_int("seed", seed, 0, self.limits.max_seed))
        t0 = time.perf_counter()
        try:
            with self.pool.busy():
                out = getattr(pipe, mode)(picture, prompt=prompt, **kwargs)
        except ValueError as exc:
            raise DemoInputError(str(exc)) from None
        gallery = [(_shown(im), _caption(k + 1, s, sd))
                   for k, (im, s, sd) in enumerate(zip(out.images, out.scores, out.seeds))]
        kept = f"top {kwargs['keep_rows']} of {grid} token rows kept"
        return gallery, f"{mode}: {len(gallery)} images, {kept}; {time.perf_counter() - t0:.1f} s"

    def describe(self, model, image, captions, top) -> tuple[dict[str, float], str]:
        """Rank captions for an uploaded image: ({caption: probability}, a Markdown table)."""
        from mini_t2i.pipeline.describe import CaptionIndex, describe_image

        pipe = self.pool.get(model)
        picture = load_upload(image, self.limits)
        top = _int("top", top, 1, self.limits.max_top)
        given = None
        if captions is not None and not isinstance(captions, str):
            raise DemoInputError("captions must be text, one caption per line")
        if captions and captions.strip():
            given = [c.strip() for c in captions.splitlines() if c.strip()]
            if len(given) > self.limits.max_captions:
                raise DemoInputError(f"{len(given)} captions; give at most {self.limits.max_captions}")
        try:
            if given is None:  # the model's own (thousands of) captions: embed them once
                key = model or self.pool.names[0]
                if key not in self._caption_indexes:
                    self._caption_indexes[key] = CaptionIndex(pipe)
                given_or_index = self._caption_indexes[key]
            else:
                given_or_index = given
            with self.pool.busy():
                matches = describe_image(pipe, picture, given_or_index, top=top)
        except ValueError as exc:
            raise DemoInputError(str(exc)) from None
        source = f"{len(given)} given captions" if given else f"the model's {len(pipe.captions)} captions"
        # the reranker's cosine shortlists, the generator's log p(image | caption) orders (describe.py)
        rows = [f"Best of {source}:", "", "| rank | caption | probability | log p(image \\| caption) | cosine |",
                "|---|---|---|---|---|"]
        rows += [f"| {k + 1} | {m.caption} | {m.probability:.3f} | {m.log_likelihood:.1f} | {m.similarity:.3f} |"
                 for k, m in enumerate(matches)]
        return {m.caption: m.probability for m in matches}, "\n".join(rows)
