"""The VQ tokenizer model: shapes, quantizer invariants, save/load round trip."""

import pytest
import torch

from mini_t2i.checkpoint import CheckpointError
from mini_t2i.pixels import tensor_from_uint8, uint8_from_tensor
from mini_t2i.vq.model import VQModel, VQModelConfig

TINY = dict(image_size=32, downsample=4, channels=[8, 16], num_res_blocks=1, codebook_size=32, code_dim=4)


@pytest.fixture
def model():
    torch.manual_seed(0)
    return VQModel(VQModelConfig(**TINY)).eval()


def test_encode_decode_shapes(model):
    x = torch.rand(3, 3, 32, 32) * 2 - 1
    tokens = model.encode(x)
    assert tokens.shape == (3, 8, 8) and tokens.dtype == torch.int64
    assert 0 <= int(tokens.min()) and int(tokens.max()) < 32
    images = model.decode(tokens)
    assert images.shape == (3, 3, 32, 32) and images.abs().max() <= 1


@pytest.mark.parametrize("downsample, channels, grid", [(2, [8], 16), (8, [8, 8, 16], 4), (16, [4, 8, 8, 16], 2)])
def test_downsampling_factors(downsample, channels, grid):
    m = VQModel(VQModelConfig(**{**TINY, "downsample": downsample, "channels": channels}))
    assert m.encode(torch.zeros(1, 3, 32, 32)).shape == (1, grid, grid)


def test_quantizer_picks_the_nearest_code(model):
    q = model.quantizer
    codes = q.normalized_codebook()
    z = codes[[5, 7, 5]] + 0.01 * torch.randn(3, 4)
    assert q.lookup(torch.nn.functional.normalize(z, dim=1)).tolist() == [5, 7, 5]
    # Decoding a token grid uses exactly those codes: encode(decode-space code) round-trips.
    z_e = codes[torch.tensor([[1, 2], [3, 4]])].permute(2, 0, 1)[None]  # (1, d, 2, 2)
    _, tokens, _ = q(z_e)
    assert tokens.tolist() == [[[1, 2], [3, 4]]]


def test_dead_codes_are_restarted_onto_encoder_outputs(model):
    model.train()
    q = model.quantizer
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    model(x)  # records this batch's encoder outputs
    q.usage.zero_()
    q.usage[0] = 5.0  # code 0 alive, the rest dead
    moved = q.restart_dead_codes(torch.Generator().manual_seed(0))
    assert moved == 31
    # Each restarted code now sits next to one of the batch's encoder outputs.
    z = q._last_z
    sims = q.normalized_codebook()[1:] @ z.t()
    assert sims.max(dim=1).values.min() > 0.99  # measured 0.99947 (1 and 2 threads)


def test_bad_inputs_are_named(model):
    with pytest.raises(ValueError, match=r"\(B, 3, 32, 32\)"):
        model.encode(torch.zeros(1, 3, 64, 64))
    with pytest.raises(ValueError, match=r"\(B, 8, 8\)"):
        model.decode(torch.zeros(1, 4, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="token ids"):
        model.decode(torch.full((1, 8, 8), 32))
    with pytest.raises(ValueError, match="power of two"):
        VQModelConfig(downsample=6)


def test_uint8_conversions_round_trip():
    u = torch.randint(0, 256, (2, 8, 8, 3), dtype=torch.uint8)
    assert torch.equal(uint8_from_tensor(tensor_from_uint8(u)), u)


def test_save_load_same_tokens_and_images(model, tmp_path):
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    model.save_pretrained(tmp_path / "vq")
    back = VQModel.from_pretrained(tmp_path / "vq")
    assert back.config == model.config
    assert torch.equal(back.encode(x), model.encode(x))
    t = model.encode(x)
    assert torch.equal(back.decode(t), model.decode(t))


def test_loading_a_mismatched_checkpoint_fails_clearly(model, tmp_path):
    model.save_pretrained(tmp_path / "vq")
    (tmp_path / "vq" / "config.yaml").write_text((tmp_path / "vq" / "config.yaml").read_text()
                                                 .replace("codebook_size: 32", "codebook_size: 64"))
    with pytest.raises(CheckpointError, match="wrong shapes"):
        VQModel.from_pretrained(tmp_path / "vq")
    with pytest.raises(CheckpointError, match="no config.yaml"):
        VQModel.from_pretrained(tmp_path)
