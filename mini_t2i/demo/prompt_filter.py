"""The demo's prompt filter: a blocklist of words and phrases the server refuses to draw.

On by default in the demo; `python demo/app.py --no-prompt-filter` (or the environment
variable MINI_T2I_PROMPT_FILTER=off, for a Space) turns it off, and `--blocklist FILE`
replaces the shipped list (blocklist.txt: one term a line, `#` comments).

Matching is on whole words after normalisation, so that trivial disguises do not pass:
Unicode NFKC (full-width and styled letters become plain ones), case folding, invisible
format characters removed (zero-width spaces and joiners, direction marks), and every
run of non-letters and non-digits turned into one space. "N-U-D-E" is not caught (the
letters are split into words); a blocklist is a floor, not a classifier.
"""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path

DEFAULT_BLOCKLIST = Path(__file__).with_name("blocklist.txt")


def normalize(text: str) -> str:
    """NFKC, casefold, drop format characters (category Cf), non-alphanumerics -> one space."""
    text = unicodedata.normalize("NFKC", text).casefold()
    text = "".join(c for c in text if unicodedata.category(c) != "Cf")
    return " ".join(re.findall(r"[^\W_]+", text))


class PromptRefused(ValueError):
    """A prompt matched the blocklist."""


class PromptFilter:
    def __init__(self, terms, source: str = "a blocklist"):
        self.terms = sorted({normalize(t) for t in terms if normalize(t)})
        self.source = source

    @classmethod
    def from_file(cls, path: str | Path = DEFAULT_BLOCKLIST) -> "PromptFilter":
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"blocklist {path} does not exist; give a text file with one term a line")
        lines = path.read_text(encoding="utf-8").splitlines()
        return cls([l.split("#", 1)[0].strip() for l in lines], source=path.name)

    def blocked_term(self, prompt: str) -> str | None:
        """The first blocklist term the prompt contains as whole words, or None."""
        words = f" {normalize(prompt)} "
        return next((t for t in self.terms if f" {t} " in words), None)

    def check(self, prompt: str) -> str:
        """The prompt, or PromptRefused naming the term."""
        term = self.blocked_term(prompt)
        if term is not None:
            raise PromptRefused(f"this demo does not draw prompts containing {term!r} (its {self.source}); "
                                "please describe something else")
        return prompt
