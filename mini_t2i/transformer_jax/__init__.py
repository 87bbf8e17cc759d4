"""The transformer in JAX/Flax with optax: the TPU (and GPU) trainer of stage 2.

    mini-t2i train transformer --backend jax --config configs/transformer_shapes64.yaml

An optional part: importing this package imports jax, flax, optax and orbax, and fails
with the extra to install when they are missing. The base install, the PyTorch trainer
and the pipeline never import it; models trained here are exported to the PyTorch
checkpoint folder (convert.py) and served by the PyTorch pipeline.
"""

try:
    import flax  # noqa: F401
    import jax  # noqa: F401
    import optax  # noqa: F401
    import orbax.checkpoint  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the install
    raise ImportError(f"the JAX backend needs jax, flax, optax and orbax-checkpoint ({exc.name} is missing): "
                      "pip install -e '.[jax]' (on a TPU VM: pip install 'jax[tpu]' first)") from exc
