"""TF-IDF text features (character 1-3 grams + word n-grams) that can be saved without pickle.

Short feedback intents are often decided by one keyword (运费险, 退款, password): character n-grams catch
those even when the frozen sentence embedding blurs them, and they need no tokenizer for Chinese.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from sklearn.feature_extraction.text import TfidfVectorizer

VOCAB_FILE = "tfidf_{name}_vocab.json"
IDF_FILE = "tfidf_{name}_idf.npy"
CONFIG_FILE = "tfidf_config.json"
# Words: runs of letters/digits; a run of CJK characters counts as one "word", the char n-grams cover its parts.
WORD_TOKEN_PATTERN = r"(?u)\b\w+\b"


@dataclass(frozen=True)
class TfidfConfig:
    char_ngram_min: int = 1
    char_ngram_max: int = 3
    word_ngram_min: int = 1
    word_ngram_max: int = 2
    max_char_features: int = 100_000
    max_word_features: int = 30_000
    min_df: int = 1
    sublinear_tf: bool = True
    lowercase: bool = True


class TextVectorizer:
    """Two TfidfVectorizers (char + word) whose outputs are stacked side by side, each L2-normalised."""

    def __init__(self, config: TfidfConfig | None = None) -> None:
        self.config = config or TfidfConfig()
        self._vectorizers: dict[str, TfidfVectorizer] = {}

    def _make(self, name: str, vocabulary: dict[str, int] | None = None) -> TfidfVectorizer:
        c = self.config
        common = {"sublinear_tf": c.sublinear_tf, "lowercase": c.lowercase, "dtype": np.float32}
        if name == "char":
            return TfidfVectorizer(
                analyzer="char",
                ngram_range=(c.char_ngram_min, c.char_ngram_max),
                max_features=None if vocabulary else c.max_char_features,
                min_df=1 if vocabulary else c.min_df,
                vocabulary=vocabulary,
                **common,
            )
        return TfidfVectorizer(
            analyzer="word",
            token_pattern=WORD_TOKEN_PATTERN,
            ngram_range=(c.word_ngram_min, c.word_ngram_max),
            max_features=None if vocabulary else c.max_word_features,
            min_df=1 if vocabulary else c.min_df,
            vocabulary=vocabulary,
            **common,
        )

    @property
    def is_fitted(self) -> bool:
        return bool(self._vectorizers)

    @property
    def n_features(self) -> int:
        return sum(len(v.vocabulary_) for v in self._vectorizers.values())

    def fit(self, texts: list[str]) -> TextVectorizer:
        if not texts:
            raise ValueError("TF-IDF needs at least one training text")
        self._vectorizers = {}
        for name in ("char", "word"):
            vectorizer = self._make(name)
            try:
                vectorizer.fit(texts)
            except ValueError:
                # e.g. texts made only of punctuation have no word tokens: the char part still works.
                if name == "char":
                    raise
                continue
            self._vectorizers[name] = vectorizer
        self._compile()
        return self

    def _compile(self) -> None:
        # Analyzer, vocabulary, idf and column offset per part, built once: the predict path reuses them.
        self._parts, offset = [], 0
        for vectorizer in self._vectorizers.values():
            vocab = vectorizer.vocabulary_
            self._parts.append((vectorizer.build_analyzer(), vocab, vectorizer.idf_, vectorizer.sublinear_tf, offset))
            offset += len(vocab)

    def transform(self, texts: list[str]) -> sp.csr_matrix:
        """Same numbers as scikit-learn's ``TfidfVectorizer.transform`` per part, stacked (a test checks it),
        without its per-call input validation, which costs milliseconds: too much for one-text predictions."""
        if not self.is_fitted:
            raise RuntimeError("TextVectorizer is not fitted")
        indptr, indices, values = [0], [], []
        for text in texts:
            for analyze, vocabulary, idf, sublinear, offset in self._parts:
                counts = Counter(vocabulary[t] for t in analyze(text) if t in vocabulary)
                cols = np.fromiter(counts.keys(), dtype=np.int64, count=len(counts))
                tf = np.fromiter(counts.values(), dtype=np.float64, count=len(counts))
                weights = (1.0 + np.log(tf) if sublinear else tf) * idf[cols]
                norm = np.sqrt(weights @ weights)
                indices.append(np.sort(cols) + offset)
                values.append((weights / norm if norm > 0 else weights)[np.argsort(cols)])
            indptr.append(indptr[-1] + sum(len(c) for c in indices[len(indices) - len(self._parts) :]))
        data = np.concatenate([*values, np.zeros(0)]).astype(np.float32)
        cols = np.concatenate([*indices, np.zeros(0, np.int64)])
        return sp.csr_matrix((data, cols, np.asarray(indptr)), shape=(len(texts), self.n_features))

    def fit_transform(self, texts: list[str]) -> sp.csr_matrix:
        return self.fit(texts).transform(texts)

    def save(self, directory: Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / CONFIG_FILE).write_text(
            json.dumps({"config": asdict(self.config), "parts": list(self._vectorizers)}), encoding="utf-8"
        )
        for name, vectorizer in self._vectorizers.items():
            vocab = {term: int(index) for term, index in vectorizer.vocabulary_.items()}
            (directory / VOCAB_FILE.format(name=name)).write_text(json.dumps(vocab, ensure_ascii=False), "utf-8")
            np.save(directory / IDF_FILE.format(name=name), vectorizer.idf_.astype(np.float64), allow_pickle=False)

    @classmethod
    def load(cls, directory: Path) -> TextVectorizer:
        directory = Path(directory)
        meta = json.loads((directory / CONFIG_FILE).read_text(encoding="utf-8"))
        instance = cls(TfidfConfig(**meta["config"]))
        for name in meta["parts"]:
            vocab = json.loads((directory / VOCAB_FILE.format(name=name)).read_text(encoding="utf-8"))
            vectorizer = instance._make(name, vocabulary=vocab)
            vectorizer.idf_ = np.load(directory / IDF_FILE.format(name=name), allow_pickle=False)
            instance._vectorizers[name] = vectorizer
        instance._compile()
        return instance
