"""Train the transformer (stage 2): `python train/train_transformer.py --config configs/transformer_shapes64.yaml [key=value ...]`.

The same as `mini-t2i train transformer ...`; everything happens in `mini_t2i.transformer.train.train_transformer`.
"""

import sys

from mini_t2i.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", "transformer", *sys.argv[1:]]))
