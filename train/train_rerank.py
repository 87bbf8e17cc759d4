"""Train the CLIP reranker: `python train/train_rerank.py --config configs/rerank_shapes64.yaml [key=value ...]`.

Everything happens in `mini_t2i.rerank.train.train_rerank`; this file only reads the
config file and the dotted overrides (e.g. `steps=100 model.preset=tiny`).
"""

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    from mini_t2i.config import load_config
    from mini_t2i.rerank.train import RerankTrainConfig, train_rerank

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", help="YAML config (see configs/); omitted: the defaults")
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help="dotted overrides of config keys, e.g. steps=100 hard_negatives=0")
    args = parser.parse_args(argv)
    cfg = load_config(RerankTrainConfig, args.config, args.overrides)
    print(train_rerank(cfg))
    return 0


if __name__ == "__main__":
    sys.exit(main())
