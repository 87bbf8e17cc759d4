"""The text tokenizer: byte-level BPE over captions, fixed length, saved as `tokenizer.json`.

    mini-t2i train text-tokenizer --config configs/text_tokenizer_shapes.yaml

    tok = TextTokenizer.from_pretrained(out_dir)  # e.g. mini_t2i/pretrained/text_shapes
    text_tokens = tok.encode(["a red circle left of a blue square"])  # (1, text_len) int64
    tok.decode(text_tokens)                                          # ["a red circle left of a blue square"]

Every caption becomes exactly `text_len` ids: ``[BOS] tokens [EOS] [PAD] ...``. A longer
caption is cut to ``[BOS] first text_len-2 tokens [EOS]``: EOS is kept so that every text
sequence has the same frame, and the transformer never sees a text that just stops. Padding
is on the right; the attention mask, where one is wanted, is ``text_tokens != pad_id``.
Truncation is silent (the training summary reports how many captions it hits; choose
text_len so that it is none). Byte-level truncation can split a multi-byte character, which
then decodes as U+FFFD.

Choices, with the measurements behind them (configs/text_tokenizer_shapes.yaml has more):
  - Special tokens first, in this order: ``[PAD]`` 0, ``[UNK]`` 1, ``[BOS]`` 2, ``[EOS]`` 3.
    PAD is 0 so that zero-filled buffers are padding. Byte-level BPE never emits UNK; the
    token exists because transformers' tokenizers expect one.
  - Normalisation: NFKC (full-width letters and composed / decomposed accents become one
    form), lower-casing (optional, on by default), every whitespace run becomes one space,
    ends stripped. Accents are kept: NFKC already unifies their forms, and stripping them
    would merge words of other languages for no gain on English captions.
  - ByteLevel pre-tokenizer and decoder, not Whitespace + UNK. Both give 9.9 ids per Shapes
    World caption at vocab_size 512. But on ten out-of-domain prompts ("a purple zigzag",
    "a café with naïve décor", emoji, Japanese), the Whitespace BPE trained on Shapes World
    turned 19 of 103 tokens (18%) into UNK and decode lost those characters, while the
    byte-level one emits no UNK and decode(encode(x)) == normalize(x) exactly. The price is
    the 256 byte tokens: 436 learned tokens instead of 223, ~210 extra embedding rows.
    The pre-tokenizer splits at spaces, so a merge never spans two words: a held-out pair
    like "red star" is the same word tokens as "red circle" and "blue star".

Files are those of transformers' fast tokenizers (`tokenizer.json` with the normaliser,
padding and truncation inside, and `tokenizer_config.json`), so
``AutoTokenizer.from_pretrained(dir)(texts, padding="max_length", truncation=True)`` gives the
same ids as `TextTokenizer.encode`, offline.
"""

from __future__ import annotations

import json
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Sequence

from mini_t2i.data.config import DataConfig

if TYPE_CHECKING:  # heavy imports stay inside the functions that use them
    import tokenizers
    import torch

from mini_t2i.text.special_ids import BOS, BOS_ID, EOS, EOS_ID, PAD, PAD_ID, SPECIAL_TOKENS, UNK, UNK_ID  # noqa: F401
NUM_BYTES = 256  # the byte-level alphabet: every byte value is a token, so nothing is unknown

# A caption longer than this many characters per text token is cut before tokenising. No
# token of a caption vocabulary spans more than ~15 characters, so the cut never changes the
# ids (they are truncated at text_len anyway) unless the text is mostly whitespace runs; it
# only keeps a pasted essay from costing a full tokenisation.
MAX_CHARS_PER_TOKEN = 64


@dataclass
class TextTokenizerConfig:
    # The most tokens, 4 special + 256 byte tokens included; training stops sooner once no
    # pair of tokens occurs min_frequency times (Shapes World: 436 of 512).
    vocab_size: int = 1024
    text_len: int = 32  # every caption becomes exactly this many ids: [BOS] tokens [EOS] [PAD]...
    min_frequency: int = 2  # a merge is learned only from a pair seen at least this often
    lowercase: bool = True  # "RED Circle" == "red circle" (NFKC and whitespace folding always apply)

    def __post_init__(self) -> None:
        if self.vocab_size < len(SPECIAL_TOKENS) + NUM_BYTES:
            raise ValueError(
                f"vocab_size={self.vocab_size} is below the {len(SPECIAL_TOKENS) + NUM_BYTES} special and byte "
                "tokens every byte-level tokenizer holds; use more (512 suits Shapes World, 1024 is the default)"
            )
        if self.text_len < 3:
            raise ValueError(
                f"text_len={self.text_len} leaves no room between [BOS] and [EOS]; use 3 or more (32 is the default)"
            )
        if self.min_frequency < 1:
            raise ValueError(f"min_frequency={self.min_frequency} must be >= 1")


@dataclass
class TextTokenizerStageConfig:
    # Where the captions come from (only the text is used; image_size does not change them).
    data: DataConfig = field(default_factory=lambda: DataConfig(source="shapes", split="train", count=20000))
    tokenizer: TextTokenizerConfig = field(default_factory=TextTokenizerConfig)
    out_dir: str = "runs/text_tokenizer"  # gets tokenizer.json, tokenizer_config.json and config.yaml


class TextTokenizer:
    """Fixed-length caption tokenizer around a `tokenizers.Tokenizer` (see the module doc).

    Build one with `train_text_tokenizer` or `TextTokenizer.from_pretrained(dir)`.
    """

    def __init__(self, tokenizer: "tokenizers.Tokenizer", text_len: int) -> None:
        from tokenizers import Tokenizer

        for expected_id, token in enumerate(SPECIAL_TOKENS):
            got = tokenizer.token_to_id(token)
            if got != expected_id:
                raise ValueError(
                    f"not a mini-t2i text tokenizer: {token} has id {got}, expected {expected_id} "
                    f"(the special tokens are {', '.join(SPECIAL_TOKENS)} = 0..3)"
                )
        if text_len < 3:
            raise ValueError(f"text_len={text_len} leaves no room between [BOS] and [EOS]; use 3 or more")
        self._text_len = text_len
        # Two copies: `_raw` measures and decodes untruncated text; `_fixed` pads and truncates.
        self._raw = Tokenizer.from_str(tokenizer.to_str())
        self._raw.no_padding()
        self._raw.no_truncation()
        self._fixed = Tokenizer.from_str(self._raw.to_str())
        # Truncation counts the [BOS] and [EOS] that the post-processor adds, so EOS survives it.
        self._fixed.enable_truncation(max_length=text_len)
        self._fixed.enable_padding(pad_id=self.pad_id, pad_token=PAD, length=text_len)

    # ------------------------------------------------------------------ properties

    @property
    def vocab_size(self) -> int:
        """Number of text ids (special tokens included); ids are 0..vocab_size-1."""
        return self._raw.get_vocab_size(with_added_tokens=True)

    @property
    def text_len(self) -> int:
        """Length of every encoded caption."""
        return self._text_len

    # The special tokens' ids are fixed by SPECIAL_TOKENS' order, the same for every tokenizer.
    pad_id, unk_id, bos_id, eos_id = PAD_ID, UNK_ID, BOS_ID, EOS_ID

    @property
    def backend(self) -> "tokenizers.Tokenizer":
        """The fixed-length `tokenizers.Tokenizer` (padding and truncation enabled)."""
        return self._fixed

    def __repr__(self) -> str:
        return f"TextTokenizer(vocab_size={self.vocab_size}, text_len={self.text_len})"

    # ------------------------------------------------------------------ encode / decode

    def _check_texts(self, texts: str | Sequence[str]) -> list[str]:
        """`texts` as a list of str, or a TypeError / ValueError saying what is wrong."""
        if isinstance(texts, str):
            batch = [texts]
        elif isinstance(texts, (list, tuple)):
            batch = list(texts)
        else:
            raise TypeError(f"texts must be a str or a list of str, got {type(texts).__name__}")
        if not batch:
            raise ValueError("texts is an empty list; give at least one caption")
        max_chars = MAX_CHARS_PER_TOKEN * self._text_len
        for i, text in enumerate(batch):
            where = "the caption" if isinstance(texts, str) else f"caption {i}"
            if not isinstance(text, str):
                raise TypeError(f"{where} is a {type(text).__name__}, not a str: {text!r:.60}")
            try:
                text.encode("utf-8")
            except UnicodeEncodeError:  # lone surrogates: bytes that were not UTF-8, escaped
                raise ValueError(f"{where} holds bytes that are not valid UTF-8 ({text!r:.60}); read the text "
                                 "with encoding='utf-8' (or fix the file's encoding)") from None
            if not text.strip():
                raise ValueError(f"{where} is empty (or only whitespace); give a non-empty description")
            if len(text) > max_chars:
                warnings.warn(
                    f"{where} has {len(text)} characters; only the first {max_chars} are tokenised "
                    f"and the result is truncated to text_len={self._text_len} tokens",
                    stacklevel=3,
                )
                batch[i] = text[:max_chars]
        return batch

    def encode(self, texts: str | Sequence[str]) -> "torch.Tensor":
        """Captions -> text_tokens, a LongTensor (B, text_len); a str gives B = 1.

        Each row is ``[BOS] tokens [EOS] [PAD]...``; a caption longer than text_len - 2
        tokens keeps its first text_len - 2 tokens and its [EOS]. The padding mask is
        ``text_tokens != pad_id``. Raises TypeError for a non-str caption and ValueError
        for an empty or whitespace-only one.
        """
        import torch

        batch = self._check_texts(texts)
        ids = torch.tensor([e.ids for e in self._fixed.encode_batch(batch)], dtype=torch.long)  # (B, text_len)
        # Text that normalises to nothing (e.g. only control characters) encodes as [BOS] [EOS].
        empty = (ids[:, 1] == self.eos_id).nonzero().flatten().tolist()
        if empty:
            where = "the caption" if isinstance(texts, str) else f"caption {empty[0]}"
            text = batch[empty[0]]
            raise ValueError(f"{where} is empty after normalisation ({text!r}); give a non-empty description")
        return ids

    def token_lengths(self, texts: str | Sequence[str]) -> list[int]:
        """How many ids each caption takes before truncation, [BOS] and [EOS] included."""
        batch = self._check_texts(texts)
        return [len(e.ids) for e in self._raw.encode_batch(batch)]

    def normalize(self, text: str) -> str:
        """The text as the tokenizer sees it (NFKC, lower-cased, whitespace folded)."""
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        return self._raw.normalizer.normalize_str(text)

    def decode(self, ids: Any) -> list[str]:
        """text_tokens -> captions; `ids` is (B, T) or (T,) as a tensor, array or lists.

        Special tokens are dropped. For a caption that was not truncated the result is
        `normalize(caption)`. Ids outside 0..vocab_size-1 (e.g. image tokens) raise ValueError.
        """
        if hasattr(ids, "tolist"):  # torch tensors and numpy arrays
            ids = ids.tolist()
        if isinstance(ids, int) or not isinstance(ids, (list, tuple)):
            raise TypeError(f"ids must be a (B, T) or (T,) tensor or list of ints, got {type(ids).__name__}")
        rows = [list(ids)] if not ids or not isinstance(ids[0], (list, tuple)) else [list(r) for r in ids]
        for b, row in enumerate(rows):
            bad = [i for i in row if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < self.vocab_size]
            if bad:
                raise ValueError(f"row {b} holds {bad[0]!r}, not a text id in 0..{self.vocab_size - 1}")
        return self._raw.decode_batch(rows, skip_special_tokens=True)

    # ------------------------------------------------------------------ files

    def save_pretrained(self, directory: str | Path) -> Path:
        """Write ``tokenizer.json`` and ``tokenizer_config.json`` into `directory`; returns it.

        The files are what transformers' fast tokenizers read, so both
        `TextTokenizer.from_pretrained` and `AutoTokenizer.from_pretrained` load them offline.
        """
        from mini_t2i.atomic import atomic_write_bytes

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(directory / "tokenizer.json", self._fixed.to_str(pretty=True).encode("utf-8"))
        # Written by hand rather than through transformers' save_pretrained: it needs no
        # 4 s transformers import and reads the same in transformers 4.x and 5.x.
        hf_config = {
            "tokenizer_class": "PreTrainedTokenizerFast",
            "pad_token": PAD,
            "unk_token": UNK,
            "bos_token": BOS,
            "eos_token": EOS,
            "model_max_length": self._text_len,
            "padding_side": "right",
            "truncation_side": "right",
            "clean_up_tokenization_spaces": False,  # the ByteLevel decoder restores spaces exactly
        }
        text = json.dumps(hf_config, indent=2) + "\n"
        atomic_write_bytes(directory / "tokenizer_config.json", text.encode("utf-8"))
        return directory

    @classmethod
    def from_pretrained(cls, directory: str | Path) -> "TextTokenizer":
        """Load a tokenizer saved by `save_pretrained` (text_len comes from its padding)."""
        from tokenizers import Tokenizer

        path = Path(directory) / "tokenizer.json"
        if not path.is_file():
            raise FileNotFoundError(
                f"{path}: no such file; train a text tokenizer first "
                "(mini-t2i train text-tokenizer --config configs/text_tokenizer_shapes.yaml)"
            )
        try:
            tokenizer = Tokenizer.from_file(str(path))
            padding = json.loads(path.read_text(encoding="utf-8")).get("padding") or {}
        except Exception as exc:  # tokenizers raises a bare Exception on bad JSON
            raise ValueError(f"{path}: not a readable tokenizer.json ({exc})") from None
        strategy = padding.get("strategy") if isinstance(padding, dict) else None
        text_len = strategy.get("Fixed") if isinstance(strategy, dict) else None  # {"Fixed": text_len}
        if not isinstance(text_len, int):
            raise ValueError(
                f"{path}: no fixed padding length (text_len) inside; save it with TextTokenizer.save_pretrained"
            )
        try:
            return cls(tokenizer, text_len)
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from None


# ---------------------------------------------------------------------------- training


def train_text_tokenizer(texts: Iterable[str], cfg: TextTokenizerConfig) -> TextTokenizer:
    """Learn a byte-level BPE of at most `cfg.vocab_size` tokens from `texts`."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

    steps = [normalizers.NFKC()] + ([normalizers.Lowercase()] if cfg.lowercase else [])
    steps += [normalizers.Replace(Regex(r"\s+"), " "), normalizers.Strip()]
    tokenizer = Tokenizer(models.BPE())
    tokenizer.normalizer = normalizers.Sequence(steps)
    # add_prefix_space: "red" at the start of a caption is the same token as " red" inside it.
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    # ...and the decoder drops that one added space again, so decode gives the normalised text.
    tokenizer.decoder = decoders.Sequence([decoders.ByteLevel(), decoders.Strip(" ", 1, 0)])
    trainer = trainers.BpeTrainer(
        vocab_size=cfg.vocab_size,
        min_frequency=cfg.min_frequency,
        special_tokens=list(SPECIAL_TOKENS),  # ids 0..3 in this order
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # all 256 bytes, seen or not
        show_progress=False,
    )

    num_texts = 0

    def checked(texts: Iterable[str]) -> Iterable[str]:
        nonlocal num_texts
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise TypeError(f"training text {i} is a {type(text).__name__}, not a str")
            num_texts += 1
            yield text

    tokenizer.train_from_iterator(checked(texts), trainer=trainer)
    if num_texts == 0:
        raise ValueError("no training texts: give at least one caption")
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A {EOS}",
        special_tokens=[(BOS, SPECIAL_TOKENS.index(BOS)), (EOS, SPECIAL_TOKENS.index(EOS))],
    )
    return TextTokenizer(tokenizer, cfg.text_len)


def train_text_tokenizer_from_config(cfg: TextTokenizerStageConfig, captions: Iterable[str] | None = None) -> Path:
    """Train on the captions of `cfg.data`, save into `cfg.out_dir`, print a summary; returns out_dir.

    `captions` replaces reading `cfg.data` (for tests, or a caller that holds them already).
    `out_dir` gets tokenizer.json, tokenizer_config.json and config.yaml (the resolved config).
    """
    from mini_t2i.config import save_config

    start = time.time()
    if captions is None:
        from mini_t2i.data.sources import LoadStats, iter_captions

        stats = LoadStats()
        texts = list(iter_captions(cfg.data, stats))
        source = f"{cfg.data.source} ({stats})"
    else:
        texts, source = list(captions), "the given captions"
    # encode would refuse empty captions; iter_captions already drops them, given ones may not.
    texts = [t for t in texts if not isinstance(t, str) or t.strip()]
    if not texts:
        raise ValueError(f"no captions to train on from {source}; check the `data` section of the config")
    read_s = time.time() - start

    start = time.time()
    tokenizer = train_text_tokenizer(texts, cfg.tokenizer)
    train_s = time.time() - start
    out_dir = tokenizer.save_pretrained(cfg.out_dir)
    save_config(cfg, out_dir / "config.yaml")

    lengths = tokenizer.token_lengths(texts)
    truncated = sum(n > tokenizer.text_len for n in lengths)
    print(
        f"text tokenizer: {len(texts)} captions from {source} in {read_s:.1f} s, "
        f"trained in {train_s:.1f} s\n"
        f"  vocab_size {tokenizer.vocab_size} (at most {cfg.tokenizer.vocab_size}: 4 special + 256 bytes + "
        f"{tokenizer.vocab_size - len(SPECIAL_TOKENS) - NUM_BYTES} merges)\n"
        f"  ids per caption incl. [BOS] [EOS]: mean {sum(lengths) / len(lengths):.1f}, max {max(lengths)}; "
        f"text_len {tokenizer.text_len}: {truncated} truncated ({100 * truncated / len(lengths):.2f}%)\n"
        f"  saved to {out_dir}"
    )
    return out_dir
