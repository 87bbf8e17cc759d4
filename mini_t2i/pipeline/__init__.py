"""Stage 3 put together: the text-to-image pipeline, its folder format, model cards and
the Shapes World evaluation with and without reranking."""
