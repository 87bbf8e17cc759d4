"""Train the diffusion baseline: `python train/train_diffusion.py --config configs/diffusion_tiny.yaml [key=value ...]`.

Everything happens in `mini_t2i.diffusion.train.train_diffusion`; this file only reads
the config file and the dotted overrides (e.g. `steps=100 model.preset=tiny`).
"""

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    from mini_t2i.config import load_config
    from mini_t2i.diffusion.train import DiffusionTrainConfig, train_diffusion

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", help="YAML config (see configs/); omitted: the defaults")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="dotted overrides, e.g. steps=100")
    args = parser.parse_args(argv)
    print(train_diffusion(load_config(DiffusionTrainConfig, args.config, args.overrides)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
