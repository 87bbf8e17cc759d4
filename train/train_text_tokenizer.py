"""Train the BPE text tokenizer: `python train/train_text_tokenizer.py --config configs/text_tokenizer_shapes.yaml`.

The same as `mini-t2i train text-tokenizer ...`; the work is in
`mini_t2i.text.tokenizer.train_text_tokenizer_from_config`.
"""

import sys

from mini_t2i.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", "text-tokenizer", *sys.argv[1:]]))
