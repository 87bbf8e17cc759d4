"""Encode a dataset into token shards: `python train/pretokenize.py --config configs/pretokenize_shapes64.yaml`.

The same as `mini-t2i pretokenize ...`; everything happens in `mini_t2i.data.pretokenize.pretokenize`.
"""

import sys

from mini_t2i.cli import main

if __name__ == "__main__":
    sys.exit(main(["pretokenize", *sys.argv[1:]]))
