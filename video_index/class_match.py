"""Which classes a search means: exact names, words, or the nearest in meaning.

``choose_classes(query, classes)`` tries, in order:

1. class names in double quotes (``'"playing cricket"'``): exactly those (any case);
2. words: classes holding every word of the query, words compared by their Snowball
   English stems (``play`` finds ``playing cricket``, ``cartwheels`` ``cartwheeling``);
3. meaning: the classes nearest the whole query by a sentence encoder
   (``video_index.text_encoder``), for words that name no class ("someone kicking a
   ball" -> kicking soccer ball): at most ``nearest``, each within ``MARGIN`` of the
   best one's cosine similarity and at least ``MIN_SIMILARITY`` (below it, a query
   such as "zebra" or "the quarterly budget report" means no class: their best
   similarity to a Kinetics-400 class is 0.35 and 0.33, while the everyday queries of
   tests/test_text_encoder.py reach theirs at 0.4-0.85).
"""

from __future__ import annotations

import dataclasses
import functools
import re
from typing import Iterable

__all__ = ["ClassChoice", "UnknownClass", "choose_classes", "describe", "match_classes", "words"]

DEFAULT_NEAREST = 3
MIN_SIMILARITY = 0.4
MARGIN = 0.1


class UnknownClass(ValueError):
    """A quoted class name that the index does not know."""


@dataclasses.dataclass(frozen=True)
class ClassChoice:
    """The classes taken for a query, how (``exact``, ``words``, ``meaning``) and, for
    ``meaning``, each class's cosine similarity to the query (same order)."""

    labels: tuple[str, ...]
    how: str
    similarities: tuple[float, ...] = ()


def words(text: str) -> list[str]:
    """Lower-case words of a class name or query: ``'Playing cricket'`` -> playing, cricket."""
    return re.findall(r"[a-z0-9']+", text.lower())


@functools.lru_cache(maxsize=1)
def _stemmer():
    import snowballstemmer

    return snowballstemmer.stemmer("english")


def stems(text: str) -> set[str]:
    """The Snowball English stems of ``text``'s words."""
    return set(_stemmer().stemWords(words(text)))


def match_classes(query: str, classes: Iterable[str]) -> list[str]:
    """Classes whose word stems include every word stem of ``query``, sorted."""
    wanted = stems(query)
    if not wanted:
        return []
    return sorted(c for c in set(classes) if wanted <= stems(c))


def _quoted(query: str) -> list[str]:
    return [q.strip() for q in re.findall(r'"([^"]*)"', query) if q.strip()]


def choose_classes(
    query: str, classes: Iterable[str], nearest: int = DEFAULT_NEAREST
) -> ClassChoice:
    """The classes ``query`` means among ``classes`` (see the module docstring); an empty
    choice for a query of no words. UnknownClass for a quoted name not in ``classes``;
    ``text_encoder.EncoderMissing`` where the meaning step is needed and not installed."""
    known = sorted(set(classes))
    quoted = _quoted(query)
    if quoted:
        by_lower = {c.lower(): c for c in known}
        missing = [q for q in quoted if q.lower() not in by_lower]
        if missing:
            raise UnknownClass(f"no class named {missing[0]!r} ({len(known)} classes known)")
        return ClassChoice(tuple(sorted({by_lower[q.lower()] for q in quoted})), "exact")
    if not words(query):
        return ClassChoice((), "words")
    matched = match_classes(query, known)
    if matched or not known:
        return ClassChoice(tuple(matched), "words")
    from video_index.text_encoder import nearest_labels

    found = nearest_labels(query, known, limit=nearest)
    floor = max(MIN_SIMILARITY, found[0][1] - MARGIN)
    taken = [(label, sim) for label, sim in found if sim >= floor]
    return ClassChoice(tuple(t[0] for t in taken), "meaning", tuple(t[1] for t in taken))


def describe(choice: ClassChoice) -> str:
    """One line for the terminal: the classes taken by meaning and their similarity."""
    pairs = zip(choice.labels, choice.similarities)
    taken = ", ".join(f"{label} ({sim:.2f})" for label, sim in pairs)
    return f"classes nearest in meaning (cosine similarity): {taken}"
