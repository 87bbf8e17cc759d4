"""The generator as a scorer: log p(codes | caption) is the training loss summed, per row, for
either image order, independent of its batch-mates; the unconditional term is the empty caption's."""

import pytest
import torch

from mini_t2i.text.special_ids import empty_caption
from mini_t2i.transformer.config import TransformerConfig
from mini_t2i.transformer.likelihood import caption_image_scores, image_log_likelihood
from mini_t2i.transformer.model import build_model, compute_loss

GEN = torch.Generator().manual_seed(0)
LAYOUTS = {"raster": TransformerConfig(preset="tiny").with_layout(436, 24, 64, 4),
           "blocks": TransformerConfig(preset="tiny", image_order="blocks", depth_layers=1).with_layout(436, 24, 64, 4)}
TEXT = torch.randint(4, 436, (5, 24), generator=GEN)
CODES = torch.randint(0, 64, (5, 16), generator=GEN)


@pytest.fixture(scope="module", params=sorted(LAYOUTS))
def model_and_cfg(request):
    cfg = LAYOUTS[request.param]
    return build_model(cfg, seed=0).eval(), cfg


def test_the_log_likelihood_is_the_training_loss_summed_over_codes(model_and_cfg):
    model, cfg = model_and_cfg
    ll = image_log_likelihood(model, cfg, TEXT, CODES)
    with torch.no_grad():
        loss, _ = compute_loss(model, cfg, TEXT, CODES)  # mean cross-entropy over B * h*w codes
    assert ll.shape == (5,) and ll.dtype == torch.float32 and (ll < 0).all()
    # fp32 sums of 80 terms of ~4 nats: measured |diff| 1e-6 relative; 1e-4 leaves CPU kernels room
    assert torch.allclose(-ll.sum() / CODES.numel(), loss, rtol=1e-4)


def test_rows_do_not_depend_on_their_batch(model_and_cfg):
    model, cfg = model_and_cfg
    together = image_log_likelihood(model, cfg, TEXT, CODES, batch_size=5)
    alone = torch.cat([image_log_likelihood(model, cfg, TEXT[i:i + 1], CODES[i:i + 1]) for i in range(5)])
    assert torch.allclose(together, alone, rtol=1e-5, atol=1e-4)  # batched fp32 matmuls round differently
    assert torch.allclose(image_log_likelihood(model, cfg, TEXT, CODES, batch_size=2), together, rtol=1e-5, atol=1e-4)


def test_pmi_subtracts_the_empty_captions_likelihood(model_and_cfg):
    model, cfg = model_and_cfg
    cond = image_log_likelihood(model, cfg, TEXT, CODES)
    uncond = image_log_likelihood(model, cfg, empty_caption(24).expand(5, -1), CODES)
    assert torch.equal(caption_image_scores(model, cfg, TEXT, CODES, uncond_weight=0.0), cond)
    assert torch.allclose(caption_image_scores(model, cfg, TEXT, CODES, uncond_weight=0.5), cond - 0.5 * uncond)


def test_shapes_are_checked(model_and_cfg):
    model, cfg = model_and_cfg
    with pytest.raises(ValueError, match=r"text_ids must be \(batch, 24\)"):
        image_log_likelihood(model, cfg, TEXT[:, :10], CODES)
    with pytest.raises(ValueError, match=r"codes must be \(5, 16\)"):
        image_log_likelihood(model, cfg, TEXT, CODES[:, :8])
