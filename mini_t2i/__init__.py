"""mini-t2i: text-to-image with a VQ image tokenizer, a GPT over text and image tokens,
and a CLIP reranker trained here.

Nothing is imported here on purpose: importing the package costs nothing, and each
stage (``mini_t2i.shapes``, ``mini_t2i.data``, ``mini_t2i.vq``, ``mini_t2i.text``)
imports its heavy dependencies only when used.
"""

__version__ = "0.1.0"
