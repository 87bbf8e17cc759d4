"""How close are a tokenizer's reconstructions to real pictures? PSNR, FID and KID beside the floor.

    python -m mini_t2i.vq.fidelity --vq mini_t2i/pretrained/emoji64/vq \\
        --val data/emoji64/val --train data/emoji64/train

For the val images (an image folder with metadata.jsonl, or any DataConfig source):
PSNR of their reconstructions, and FID / KID on EfficientNet-Lite0 ImageNet features
(mini_t2i.metrics) of the reconstructions against the real val images, beside the
real-vs-real floor: as many real *train* images against the same val images. FID is biased
upwards at small sizes, so the floor is measured at the same size and only the ratio
(reconstructions / floor) compares across runs at that size. Issue 20 asks for <= 1.3x.
"""

from __future__ import annotations

import argparse
import json

import numpy as np


def folder_examples(path: str, size: int, count: int = 0) -> tuple[np.ndarray, list[str]]:
    """An image folder (metadata.jsonl) -> ((N, size, size, 3) uint8 images, N captions)."""
    from mini_t2i.data.config import DataConfig
    from mini_t2i.data.sources import iter_examples

    examples = list(iter_examples(DataConfig(source="imagefolder", path=path, count=count, image_size=size)))
    if not examples:
        raise ValueError(f"{path} holds no images; give an image folder with metadata.jsonl (mini-t2i data ...)")
    return np.stack([np.asarray(e.image, dtype=np.uint8) for e in examples]), [e.text for e in examples]


def floor_images(train: str, size: int, count: int, val: str, seed: int = 0) -> np.ndarray:
    """`count` real images of the folder `train` (a fixed draw by `seed`): the real-vs-real floor
    against as many held-back images of `val`."""
    pool, _ = folder_examples(train, size)
    if len(pool) < count:
        raise ValueError(f"{train} has {len(pool)} images; the floor needs at least the {count} of {val}")
    return pool[np.sort(np.random.default_rng(seed).choice(len(pool), count, replace=False))]


def distances(features: np.ndarray, real_features: np.ndarray) -> dict:
    """FID and KID (with its std over subsets) of `features` against `real_features`."""
    from mini_t2i.metrics.distribution import frechet_distance, kernel_inception_distance

    kid, kid_std = kernel_inception_distance(features, real_features)
    return {"fid": frechet_distance(features, real_features), "kid": kid, "kid_std": kid_std}


def reconstruction_fidelity(vq: str, val: str, train: str, seed: int = 0) -> dict:
    """The module doc's numbers for the VQ folder `vq` on the image folders `val` and `train`."""
    from mini_t2i.metrics.efficientnet import image_features, load_efficientnet_lite0
    from mini_t2i.vq.evaluate import psnr, reconstruct
    from mini_t2i.vq.model import VQModel

    model = VQModel.from_pretrained(vq)
    size = model.config.image_size
    real, _ = folder_examples(val, size)
    others = floor_images(train, size, len(real), val, seed)
    recon, _ = reconstruct(model, real)
    net = load_efficientnet_lite0()
    f_real, f_recon, f_other = (image_features(net, x) for x in (real, recon, others))
    d_recon, d_floor = distances(f_recon, f_real), distances(f_other, f_real)
    return {"vq": str(vq), "count": len(real), "psnr": psnr(real, recon),
            "fid_reconstructions": d_recon["fid"], "fid_floor": d_floor["fid"],
            "fid_ratio": d_recon["fid"] / d_floor["fid"],
            "kid_reconstructions": d_recon["kid"], "kid_reconstructions_std": d_recon["kid_std"],
            "kid_floor": d_floor["kid"], "kid_floor_std": d_floor["kid_std"]}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--vq", required=True, help="a VQ folder (runs/vq_.../final or a pipeline's vq/)")
    parser.add_argument("--val", required=True, help="an image folder of held-back images")
    parser.add_argument("--train", required=True, help="an image folder of training images (the floor)")
    parser.add_argument("--out")
    args = parser.parse_args(argv)
    result = reconstruction_fidelity(args.vq, args.val, args.train)
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        from mini_t2i.atomic import atomic_write_text

        atomic_write_text(args.out, text + "\n")


if __name__ == "__main__":
    main()
