"""mini-t2i: text-to-image with a VQ image tokenizer, a GPT over text and image tokens,
and a CLIP reranker trained here.

Nothing is imported here on purpose: importing the package costs nothing, and each
stage (``mini_t2i.shapes``, ``mini_t2i.data``, ``mini_t2i.vq``, ``mini_t2i.text``)
imports its heavy dependencies only when used.
"""

__version__ = "0.1.0"


def __getattr__(name: str):
    # `from mini_t2i import TextToImagePipeline` without importing torch at package import.
    if name in ("TextToImagePipeline", "PipelineOutput"):
        from mini_t2i.pipeline import pipeline

        return getattr(pipeline, name)
    raise AttributeError(f"module 'mini_t2i' has no attribute {name!r}")
