"""The Shapes World text tokenizer that ships with the package."""

from pathlib import Path

import mini_t2i
from mini_t2i.text.tokenizer import TextTokenizer

SHIPPED = Path(mini_t2i.__file__).parent / "pretrained" / "text_shapes"


def test_shipped_text_tokenizer_covers_shapes_world_captions():
    from transformers import AutoTokenizer

    from mini_t2i.shapes.scenes import generate_split

    tok = TextTokenizer.from_pretrained(SHIPPED)
    assert (tok.pad_id, tok.unk_id, tok.bos_id, tok.eos_id) == (0, 1, 2, 3) and tok.text_len == 24
    captions = [s.text for split in ("val", "test_heldout") for s in generate_split(split, 60, size=32)]
    ids = tok.encode(captions)
    assert ids.shape == (120, 24)
    assert (ids == tok.eos_id).sum(dim=1).eq(1).all()  # nothing truncated: every caption keeps its EOS
    assert tok.decode(ids) == [tok.normalize(c) for c in captions]
    hf = AutoTokenizer.from_pretrained(str(SHIPPED), local_files_only=True)
    hf_ids = hf(captions, padding="max_length", truncation=True, max_length=24)["input_ids"]
    assert ids.tolist() == hf_ids
