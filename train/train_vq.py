"""Train the VQ image tokenizer: `python train/train_vq.py --config configs/vq_shapes64.yaml [key=value ...]`.

The same as `mini-t2i train vq ...`; everything happens in `mini_t2i.vq.train.train_vq`.
"""

import sys

from mini_t2i.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", "vq", *sys.argv[1:]]))
