"""What a text encoder really reads of a concept: truncation and characters it has no token for.

A CLIP text encoder reads at most ``context_length`` tokens (77 for OpenAI's CLIP, 24 for
``zoo:shapes-clip``), start and end tokens included, and silently drops the rest: a long concept
("a small red circle with stripes on a beige background in the top-left corner") is scored on its
first words only. open_clip's byte-level BPE never fails on a character, but one it has no token
for (an emoji, most symbols) becomes raw byte tokens the model hardly saw in training, and
characters its cleaning removes are not read at all. :func:`check_concept_texts` says both, per
concept, so a page or a notebook can warn before trusting a score::

    for check in check_concept_texts(backbone, ["a red circle", "a ☃ shape"]):
        if check.problems:
            print(check.text, "->", "; ".join(check.problems))
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["TextCheck", "check_concept_texts"]


@dataclass(frozen=True)
class TextCheck:
    """One concept text as the tokenizer reads it.

    ``n_tokens``: its tokens without the start/end tokens; ``limit``: how many of them fit;
    ``kept``: the text the encoder actually reads (all of it unless ``truncated``); ``unknown``:
    characters read as raw bytes or dropped (in order, each once)."""

    text: str
    n_tokens: int
    limit: int
    kept: str
    truncated: bool
    unknown: tuple[str, ...] = field(default=())

    @property
    def problems(self) -> list[str]:
        """Plain sentences, empty when the encoder reads the concept whole."""
        out = []
        if self.truncated:
            out.append(f"{self.n_tokens} tokens, the text encoder reads {self.limit}: it sees only “{self.kept}”")
        if self.unknown:
            shown = ", ".join(f"“{c}” (U+{ord(c):04X})" for c in self.unknown)
            out.append(f"the tokenizer has no token for {shown}: read as raw bytes or dropped, so the score may mean little")
        return out


def _tokenizer(backbone_or_tokenizer: Any) -> Any:
    return getattr(backbone_or_tokenizer, "tokenizer", backbone_or_tokenizer)


def _context_length(tokenizer: Any, backbone: Any) -> int:
    for owner, name in ((tokenizer, "context_length"), (getattr(backbone, "model", None), "context_length"), (tokenizer, "model_max_length")):
        value = getattr(owner, name, None)
        if isinstance(value, int) and 0 < value < 10**6:
            return value
    raise ValueError(f"cannot tell the context length of {type(tokenizer).__name__}: it has no context_length or model_max_length")


def _encode(tokenizer: Any, text: str) -> list[int]:
    if hasattr(tokenizer, "bpe") and hasattr(tokenizer, "encode"):  # open_clip's SimpleTokenizer: no special tokens
        return list(tokenizer.encode(text))
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def _unknown_characters(tokenizer: Any, text: str) -> tuple[str, ...]:
    unknown = []
    unk_id = getattr(tokenizer, "unk_token_id", None)
    for char in dict.fromkeys(text):
        if char.isspace():
            continue
        ids = _encode(tokenizer, char)
        if hasattr(tokenizer, "bpe"):
            # byte-level BPE: a character with a token of its own encodes to one id; one split into its
            # UTF-8 bytes encodes to several, and one the cleaning removes to none
            unknown_here = len(ids) != 1 and len(char.encode("utf-8")) > 1 or not ids
        else:
            unknown_here = not ids or (unk_id is not None and unk_id in ids)
        if unknown_here:
            unknown.append(char)
    return tuple(unknown)


def check_concept_texts(backbone_or_tokenizer: Any, texts: Sequence[str]) -> list[TextCheck]:
    """For each text, how the backbone's tokenizer reads it: token count, what fits the context,
    the kept text, and the characters it has no token for (module docstring).

    Takes an image-text backbone (its ``tokenizer``) or an open_clip / Hugging Face tokenizer."""
    if isinstance(texts, str):
        texts = [texts]
    tokenizer = _tokenizer(backbone_or_tokenizer)
    context = _context_length(tokenizer, backbone_or_tokenizer)
    special = 2 if hasattr(tokenizer, "bpe") else int(getattr(tokenizer, "num_special_tokens_to_add", lambda: 0)())
    limit = max(context - special, 0)
    checks = []
    for text in texts:
        ids = _encode(tokenizer, str(text))
        truncated = len(ids) > limit
        kept = tokenizer.decode(ids[:limit]).strip() if truncated else str(text)
        checks.append(TextCheck(str(text), len(ids), limit, kept, truncated, _unknown_characters(tokenizer, str(text))))
    return checks
