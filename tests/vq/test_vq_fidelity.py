"""Reconstruction fidelity: PSNR, FID and KID of reconstructions beside the real-vs-real floor."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from mini_t2i.vq.fidelity import main, reconstruction_fidelity
from mini_t2i.vq.model import VQModel, VQModelConfig


def _folder(path, count, seed):
    path.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(count):
        im = np.zeros((64, 64, 3), np.uint8)
        x, y = rng.integers(4, 40, 2)
        im[y:y + 20, x:x + 20] = rng.integers(60, 256, 3)  # a coloured square on black
        Image.fromarray(im).save(path / f"{i:05d}.png")
        rows.append(json.dumps({"file_name": f"{i:05d}.png", "text": f"square {i}"}))
    (path / "metadata.jsonl").write_text("\n".join(rows) + "\n")


def test_fidelity_reports_reconstructions_beside_the_floor(tmp_path):
    torch.manual_seed(0)
    VQModel(VQModelConfig(image_size=64, downsample=4, channels=[8, 8], codebook_size=16, code_dim=4)).save_pretrained(
        tmp_path / "vq")
    _folder(tmp_path / "val", 12, 0)
    _folder(tmp_path / "train", 20, 1)
    out = tmp_path / "f.json"
    main(["--vq", str(tmp_path / "vq"), "--val", str(tmp_path / "val"), "--train", str(tmp_path / "train"),
          "--out", str(out)])
    r = json.loads(out.read_text())
    assert r["count"] == 12 and r["fid_ratio"] == pytest.approx(r["fid_reconstructions"] / r["fid_floor"])
    # an untrained tokenizer's reconstructions are far from the squares; other squares are close
    assert r["fid_reconstructions"] > r["fid_floor"] > 0 and r["psnr"] < 20
    with pytest.raises(ValueError, match="the floor needs at least"):
        reconstruction_fidelity(str(tmp_path / "vq"), str(tmp_path / "train"), str(tmp_path / "val"))
