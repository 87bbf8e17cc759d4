"""The Gradio demo: generate (streaming previews, ranked gallery, stop, grid download),
edit (variations, complete) and describe (the reranker ranks captions for an image).

    python demo/app.py                     # the shipped models on http://127.0.0.1:7860
    python demo/app.py --model runs/my_pipeline --port 8000

Controls carry the pipeline's argument names, and so does the API that `gradio_client`
sees (`/generate`, `/edit`, `/describe`). All actions share one queue with a concurrency
limit (default 1): parallel users wait their turn instead of sharing memory.
"""

from __future__ import annotations

import functools
import logging
import os
from typing import Sequence

from mini_t2i.demo.handlers import DemoHandlers, DemoInputError, DemoLimits, ModelPool

log = logging.getLogger(__name__)
TITLE = "mini-t2i: text to image with a VQ tokenizer, a GPT and a CLIP reranker"


def require_gradio():
    """Import gradio, or say which extra installs it."""
    try:
        import gradio as gr
    except ImportError:
        raise ImportError("the demo needs gradio: pip install -e '.[demo]' (or pip install 'gradio>=5')") from None
    return gr


def _user_errors(fn):
    """Turn a handler's refusals into gr.Error (shown to the user) and anything else into a
    one-line gr.Error too, with the traceback in the server log rather than the page."""
    gr = require_gradio()

    def translate(exc: Exception) -> Exception:
        if isinstance(exc, gr.Error):
            return exc
        if isinstance(exc, DemoInputError):
            return gr.Error(str(exc))
        log.exception("demo handler %s failed", fn.__name__)
        return gr.Error(f"{type(exc).__name__}: {exc}")

    if _is_generator(fn):
        @functools.wraps(fn)
        def stream(*args):
            try:
                yield from fn(*args)
            except Exception as exc:
                raise translate(exc) from None
        return stream

    @functools.wraps(fn)
    def call(*args):
        try:
            return fn(*args)
        except Exception as exc:
            raise translate(exc) from None
    return call


def _is_generator(fn) -> bool:
    import inspect

    return inspect.isgeneratorfunction(fn)


def build_demo(pipe=None, models: Sequence[str] | None = None, limits: DemoLimits | None = None,
               concurrency: int = 1, max_queue: int = 32, device: str = "cpu", decode_weights: str | None = None):
    """The demo as a `gr.Blocks`, queue configured; `.launch()` serves it.

    pipe: a `TextToImagePipeline` to serve (or a `ModelPool`); None serves `models`
    (names of shipped models or pipeline folders), by default every shipped model.
    decode_weights: auto / fp32 / fp16 / int8 / fused for every model (None: each pipeline.yaml's)."""
    gr = require_gradio()
    if isinstance(pipe, ModelPool):
        pool = pipe
    elif pipe is not None:
        pool = ModelPool({pipe.config.name: pipe}, names=models or [], device=device, decode_weights=decode_weights)
    else:
        pool = ModelPool(names=models, device=device, decode_weights=decode_weights)
    handlers = DemoHandlers(pool, limits)
    limits = handlers.limits
    first = pool.get(pool.names[0])
    cfg, grid_size = first.config, first.vq.config.grid_size

    # Named like the pipeline's arguments: gradio_client's API takes these names.
    def generate(prompt, model, num_images, num_candidates, guidance_scale, temperature, top_k, top_p, seed):
        for update in handlers.generate(model, prompt, num_images, num_candidates, guidance_scale, temperature,
                                        top_k, top_p, seed):
            yield update.gallery, update.status, update.grid_path

    def edit(image, mode, prompt, model, keep_rows, num_images, num_candidates, seed):
        return handlers.edit(model, image, mode, prompt, keep_rows, num_images, num_candidates, seed)

    def describe(image, captions, model, top):
        return handlers.describe(model, image, captions, top)

    def preview(image, model):
        if not image:
            return None
        return handlers.model_view(model, image)

    def model_defaults(model):
        c = pool.get(model).config
        return c.num_candidates, c.guidance_scale, c.temperature, c.top_k, c.top_p

    shared = dict(concurrency_limit=concurrency, concurrency_id="pipeline")
    with gr.Blocks(title="mini-t2i") as demo:
        gr.Markdown(f"## {TITLE}\nSampled token by token, then the reranker orders the candidates. Models: "
                    + ", ".join(f"`{n}`" for n in pool.names) + ".")
        with gr.Tab("Generate"):
            with gr.Row():
                with gr.Column(scale=2):
                    prompt = gr.Textbox(label="prompt", placeholder="a red circle above a blue square",
                                        max_lines=2, elem_id="prompt")
                    with gr.Row():
                        run = gr.Button("Generate", variant="primary", elem_id="generate")
                        stop = gr.Button("Stop", variant="stop", elem_id="stop")
                    model = gr.Dropdown(pool.names, value=pool.names[0], label="model")
                    with gr.Accordion("settings", open=False):
                        num_images = gr.Slider(1, limits.max_images, value=4, step=1, label="num_images")
                        num_candidates = gr.Slider(1, limits.max_candidates, value=max(cfg.num_candidates, 4), step=1,
                                                   label="num_candidates", info="sampled; the reranker keeps the best")
                        guidance_scale = gr.Slider(1, limits.max_guidance, value=cfg.guidance_scale, step=0.5,
                                                   label="guidance_scale", info="classifier-free guidance; 1 = off")
                        temperature = gr.Slider(0, limits.max_temperature, value=cfg.temperature, step=0.05,
                                                label="temperature", info="0 = greedy")
                        top_k = gr.Slider(0, first.transformer_config.codebook_size, value=cfg.top_k, step=1,
                                          label="top_k", info="0 = off")
                        top_p = gr.Slider(0.05, 1, value=cfg.top_p, step=0.05, label="top_p", info="1 = off")
                        seed = gr.Number(0, precision=0, label="seed")
                    examples = pool.examples()
                    if examples:
                        gr.Examples(examples, [prompt, model], label="examples")
                with gr.Column(scale=3):
                    gallery = gr.Gallery(label="images, best first", columns=4, format="png", object_fit="contain",
                                         elem_id="gallery")
                    status = gr.Markdown(label="status", elem_id="status")
                    grid = gr.File(label="grid (PNG)", elem_id="grid")
        with gr.Tab("Edit"):
            with gr.Row():
                with gr.Column(scale=2):
                    # A file, not gr.Image: our loader decodes it, so a bad file gets our message.
                    edit_image = gr.File(label="image", file_types=["image"], type="filepath")
                    edit_preview = gr.Image(label="as the model sees it", interactive=False, height=160)
                    mode = gr.Radio(["variations", "complete"], value="variations", label="mode",
                                    info="variations: keep the top rows, re-rank by likeness; complete: redraw "
                                         "the bottom, following the prompt")
                    edit_prompt = gr.Textbox(label="prompt (optional)", max_lines=2)
                    keep_rows = gr.Slider(0, grid_size, value=grid_size // 4, step=1, label="keep_rows",
                                          info=f"token rows kept from the top (of {grid_size})")
                    with gr.Row():
                        edit_images = gr.Slider(1, limits.max_images, value=4, step=1, label="num_images")
                        edit_candidates = gr.Slider(1, limits.max_candidates, value=8, step=1, label="num_candidates")
                    edit_seed = gr.Number(0, precision=0, label="seed")
                    edit_run = gr.Button("Edit", variant="primary")
                with gr.Column(scale=3):
                    edit_gallery = gr.Gallery(label="images, best first", columns=4, format="png", object_fit="contain")
                    edit_status = gr.Markdown(label="status")
        with gr.Tab("Describe"):
            with gr.Row():
                with gr.Column(scale=2):
                    describe_image = gr.File(label="image", file_types=["image"], type="filepath")
                    describe_preview = gr.Image(label="as the model sees it", interactive=False, height=160)
                    captions = gr.Textbox(label="captions to rank (one per line; empty: the model's own list)",
                                          lines=4)
                    top = gr.Slider(1, limits.max_top, value=5, step=1, label="top")
                    describe_run = gr.Button("Describe", variant="primary")
                with gr.Column(scale=3):
                    ranked = gr.Label(label="captions, best first")
                    table = gr.Markdown(label="table")

        inputs = [prompt, model, num_images, num_candidates, guidance_scale, temperature, top_k, top_p, seed]
        event = gr.on([run.click, prompt.submit], _user_errors(generate), inputs, [gallery, status, grid],
                      api_name="generate", **shared)
        stop.click(None, None, None, cancels=[event], api_name=False)
        model.change(_user_errors(model_defaults), model,
                     [num_candidates, guidance_scale, temperature, top_k, top_p], api_name=False)
        for upload, shown in ((edit_image, edit_preview), (describe_image, describe_preview)):
            upload.change(_user_errors(preview), [upload, model], shown, api_name=False)
        edit_run.click(_user_errors(edit), [edit_image, mode, edit_prompt, model, keep_rows, edit_images,
                                            edit_candidates, edit_seed], [edit_gallery, edit_status],
                       api_name="edit", **shared)
        describe_run.click(_user_errors(describe), [describe_image, captions, model, top], [ranked, table],
                           api_name="describe", **shared)
    demo.queue(max_size=max_queue, default_concurrency_limit=concurrency)
    demo.pool = pool  # for tests and benchmarks: which models are loaded, how many runs were stopped
    demo.limits = limits  # launch() reads max_file_size
    return demo


def launch(demo, host: str | None = None, port: int | None = None, block: bool = True):
    """Serve `demo` (127.0.0.1:7860 by default; a Space sets GRADIO_SERVER_NAME=0.0.0.0).
    Uploads over the limits' max_file_size are refused by the server before they are read."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    host = host or os.environ.get("GRADIO_SERVER_NAME") or "127.0.0.1"
    port = port or int(os.environ.get("GRADIO_SERVER_PORT", 7860))
    limits = getattr(demo, "limits", None)
    return demo.launch(server_name=host, server_port=port, prevent_thread_lock=not block, show_error=True,
                       footer_links=["api"], max_file_size=limits.max_file_size if limits else None)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on now (for tests and benchmarks that start a server)."""
    import socket

    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]
