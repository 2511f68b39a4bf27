"""Seeded text perturbations and the robustness report built on them.

The same perturbations score a model (``robustness_report``: metrics on perturbed copies of a test set, and
the drop against the clean set) and augment its training set (``modeling.engine.data.augment``). Each is
deterministic per (seed, perturbation, position in the list) and keeps the text's label:

- ``typos``: Chinese characters swapped for a homophone (same toneless pinyin, from a table of common
  characters built from pypinyin's data), English words with a keyboard-neighbour substitution or a dropped
  letter;
- ``noise``: emoji, filler words (嗯 / 那个 / 呃, um / uh) and punctuation runs inserted;
- ``truncate``: only the first part of the text is kept (a very short text);
- ``concat``: a shorter piece of an unrelated text, of another label from the same set, appended
  (cross-topic interference, a longer text).
"""

from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Callable, Sequence
from functools import lru_cache

PERTURBATIONS = ("typos", "noise", "truncate", "concat")
TYPO_RATE = 0.15  # share of CJK characters / English words given a typo (at least one per text)
TRUNCATE_KEEP = 0.5  # share of characters (Chinese) or words (English) that truncation keeps
CONCAT_SHARE = 0.5  # the appended piece is at most this share of the original text's length
# A character belongs to the homophone table when it occurs in this many of pypinyin's phrases: about 3,000
# characters, close to the everyday set an input method offers first.
COMMON_CHAR_MIN_PHRASES = 5

_CJK = re.compile(r"[\u4e00-\u9fff]")
_WORD = re.compile(r"[A-Za-z]+")
EMOJI = ("😂", "🙏", "👍", "😡", "🤔", "😭", "😊", "🔥", "💔", "🙄")
FILLERS_ZH = ("嗯", "那个", "呃", "就是", "啊")
FILLERS_EN = ("um", "uh", "like", "well", "hmm")
PUNCTUATION = ("！！", "？？", "。。。", "~", "...", "!!", "??", "，")
_KEYBOARD_ROWS = ("qwertyuiop", "asdfghjkl", "zxcvbnm")

PredictLabels = Callable[[list[str]], list[str]]


def is_chinese(text: str) -> bool:
    """Chinese when at least a third of the non-space characters are CJK ideographs."""
    chars = [c for c in text if not c.isspace()]
    return bool(chars) and len(_CJK.findall(text)) * 3 >= len(chars)


@lru_cache(maxsize=1)
def homophone_table() -> dict[str, tuple[str, ...]]:
    """Toneless pinyin -> the common characters read that way (each under its first, most usual reading)."""
    from pypinyin.contrib.tone_convert import to_normal
    from pypinyin.phrases_dict import phrases_dict
    from pypinyin.pinyin_dict import pinyin_dict

    counts = Counter(ch for phrase in phrases_dict for ch in phrase)
    groups: dict[str, list[str]] = {}
    for ch, n in sorted(counts.items()):
        if n >= COMMON_CHAR_MIN_PHRASES and ord(ch) in pinyin_dict and _CJK.fullmatch(ch):
            groups.setdefault(_first_reading(pinyin_dict[ord(ch)], to_normal), []).append(ch)
    return {reading: tuple(chars) for reading, chars in groups.items() if len(chars) > 1}


def _first_reading(readings: str, to_normal: Callable[[str], str]) -> str:
    return to_normal(readings.split(",")[0].strip())


@lru_cache(maxsize=1)
def _reading_of() -> dict[str, str]:
    from pypinyin.contrib.tone_convert import to_normal
    from pypinyin.pinyin_dict import pinyin_dict

    table = homophone_table()
    return {
        chr(code): reading
        for code, readings in pinyin_dict.items()
        if (reading := _first_reading(readings, to_normal)) in table
    }


def homophone(ch: str, rng: random.Random) -> str | None:
    """Another common character with the same toneless reading, or None when there is none."""
    reading = _reading_of().get(ch)
    if reading is None:
        return None
    choices = [c for c in homophone_table()[reading] if c != ch]
    return rng.choice(choices) if choices else None


@lru_cache(maxsize=1)
def _keyboard_neighbours() -> dict[str, str]:
    position = {ch: (r, c) for r, row in enumerate(_KEYBOARD_ROWS) for c, ch in enumerate(row)}
    neighbours: dict[str, str] = {}
    for ch, (r, c) in position.items():
        near = [
            other
            for other, (r2, c2) in position.items()
            if other != ch and abs(r2 - r) <= 1 and abs(c2 - c) <= 1 and (r2, c2) != (r, c)
        ]
        neighbours[ch] = "".join(sorted(near))
    return neighbours


def _typo_count(n: int, rng: random.Random) -> int:
    return max(1, sum(rng.random() < TYPO_RATE for _ in range(n)))


def typos_zh(text: str, rng: random.Random) -> str:
    chars = list(text)
    swappable = [i for i, ch in enumerate(chars) if ch in _reading_of()]
    if not swappable:
        return typos_en(text, rng)
    for i in rng.sample(swappable, min(len(swappable), _typo_count(len(swappable), rng))):
        chars[i] = homophone(chars[i], rng) or chars[i]
    return "".join(chars)


def _english_typo(word: str, rng: random.Random) -> str:
    i = rng.randrange(len(word))
    if len(word) > 2 and rng.random() < 0.4:
        return word[:i] + word[i + 1 :]
    lower = word[i].lower()
    near = _keyboard_neighbours().get(lower)
    if not near:
        return word[:i] + word[i + 1 :] if len(word) > 1 else word
    new = rng.choice(near)
    return word[:i] + (new.upper() if word[i].isupper() else new) + word[i + 1 :]


def typos_en(text: str, rng: random.Random) -> str:
    words = list(_WORD.finditer(text))
    if not words:
        return text
    picked = sorted(rng.sample(range(len(words)), min(len(words), _typo_count(len(words), rng))))
    out, last = [], 0
    for index in picked:
        match = words[index]
        out += [text[last : match.start()], _english_typo(match.group(), rng)]
        last = match.end()
    return "".join(out) + text[last:]


def typos(text: str, rng: random.Random) -> str:
    return typos_zh(text, rng) if is_chinese(text) else typos_en(text, rng)


def noise(text: str, rng: random.Random) -> str:
    chinese = is_chinese(text)
    fillers = FILLERS_ZH if chinese else FILLERS_EN
    pieces = [rng.choice(EMOJI), rng.choice(fillers), rng.choice(PUNCTUATION)]
    rng.shuffle(pieces)
    pieces = pieces[: rng.randint(2, 3)]
    if chinese:
        units, joiner = list(text), ""
    else:
        units, joiner = text.split(), " "
    for piece in pieces:
        units.insert(rng.randint(0, len(units)), piece)
    return joiner.join(units)


def truncate(text: str, rng: random.Random) -> str:
    if is_chinese(text):
        keep = max(1, round(len(text) * TRUNCATE_KEEP))
        return text[:keep] if keep < len(text) else text[:-1] or text
    words = text.split()
    if len(words) > 1:
        return " ".join(words[: max(1, round(len(words) * TRUNCATE_KEEP))])
    return text[: max(1, round(len(text) * TRUNCATE_KEEP))]


def concat_with(text: str, other: str) -> str:
    """``text`` followed by the start of ``other``, at most CONCAT_SHARE of ``text``'s length in characters."""
    budget = max(2, int(len(text) * CONCAT_SHARE))
    if is_chinese(other):
        piece = other[:budget]
    else:
        words, piece = other.split(), ""
        for word in words:
            if piece and len(piece) + 1 + len(word) > budget:
                break
            piece = f"{piece} {word}".strip()
    return f"{text}，{piece}" if is_chinese(text) else f"{text}, {piece}"


_SINGLE: dict[str, Callable[[str, random.Random], str]] = {"typos": typos, "noise": noise, "truncate": truncate}


def item_rng(seed: int, kind: str, index: int) -> random.Random:
    # A string seed is hashed with sha512 by random.Random: the same in every process, unlike hash().
    return random.Random(f"{seed}:{kind}:{index}")


def perturb(texts: Sequence[str], labels: Sequence[str], kind: str, seed: int = 0) -> list[str]:
    """Perturbed copies of ``texts`` (labels unchanged); ``labels`` pick concat's partner from another label."""
    if kind not in PERTURBATIONS:
        raise ValueError(f"unknown perturbation {kind!r}; choose one of {', '.join(PERTURBATIONS)}")
    if len(texts) != len(labels):
        raise ValueError(f"{len(texts)} texts but {len(labels)} labels")
    return [perturb_one(texts, labels, i, kind, seed) for i in range(len(texts))]


def perturb_one(texts: Sequence[str], labels: Sequence[str], index: int, kind: str, seed: int) -> str:
    """Item ``index``'s perturbed copy; concat draws its partner, of another label, from the whole set."""
    rng = item_rng(seed, kind, index)
    if kind != "concat":
        return _SINGLE[kind](texts[index], rng)
    partner = _other_label_index(labels, index, rng)
    return texts[index] if partner is None else concat_with(texts[index], texts[partner])


def _other_label_index(labels: Sequence[str], index: int, rng: random.Random, tries: int = 32) -> int | None:
    # A few random draws almost always hit another label; a full scan settles sets dominated by one label.
    for _ in range(tries):
        j = rng.randrange(len(labels))
        if labels[j] != labels[index]:
            return j
    return next((j for j in range(len(labels)) if labels[j] != labels[index]), None)


def _scores(true: Sequence[str], predicted: Sequence[str]) -> dict[str, float]:
    from sklearn.metrics import accuracy_score, f1_score

    # Macro-F1 over the classes present in gold or predictions, as modeling.engine.evaluation.metrics does.
    present = sorted(set(true) | set(predicted))
    return {
        "macro_f1": round(float(f1_score(true, predicted, labels=present, average="macro", zero_division=0)), 6),
        "accuracy": round(float(accuracy_score(true, predicted)), 6),
    }


def robustness_report(
    predict_labels: PredictLabels, texts: Sequence[str], labels: Sequence[str], seed: int = 0
) -> dict[str, dict[str, float]]:
    """Macro-F1 and accuracy on the clean texts and on each perturbed copy, with the drop against clean.

    ``drop_*`` is clean minus perturbed (positive = worse); ``changed`` is the share of texts the
    perturbation actually altered."""
    texts, labels = list(texts), list(labels)
    if not texts:
        raise ValueError("robustness needs at least one labelled text")
    clean = _scores(labels, _predict(predict_labels, texts))
    report: dict[str, dict[str, float]] = {"clean": {**clean, "n": len(texts)}}
    for kind in PERTURBATIONS:
        perturbed = perturb(texts, labels, kind, seed)
        scores = _scores(labels, _predict(predict_labels, perturbed))
        report[kind] = {
            **scores,
            "drop_macro_f1": round(clean["macro_f1"] - scores["macro_f1"], 6),
            "drop_accuracy": round(clean["accuracy"] - scores["accuracy"], 6),
            "n": len(texts),
            "changed": round(sum(a != b for a, b in zip(texts, perturbed, strict=True)) / len(texts), 6),
        }
    return report


def _predict(predict_labels: PredictLabels, texts: list[str]) -> list[str]:
    predicted = list(predict_labels(texts))
    if len(predicted) != len(texts):
        raise ValueError(f"predict_labels returned {len(predicted)} labels for {len(texts)} texts")
    return [str(p) for p in predicted]
