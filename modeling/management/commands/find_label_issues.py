"""Rank suspected label errors of a labelled JSONL file (out-of-fold probe + cleanlab).

With `--reference` (the same lines with trusted labels) it prints precision@k. `--inject-noise SHARE`
flips a seeded share of the train labels first and uses the original labels as the reference: the
measurement of docs/ACTIVE_LEARNING.md.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from django.core.management.base import BaseCommand, CommandError

from modeling.engine.selection import quality
from modeling.services.label_quality import LabelledFile, check_labelled_file, read_labelled_jsonl
from sceneclf_site.api_errors import ServiceError


class Command(BaseCommand):
    help = "Rank likely label errors and near-duplicate conflicts in a labelled JSONL file."
    # Offline file-in, file-out work: no URL or model checks needed (they also slow every run).
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--train", required=True)
        parser.add_argument("--json", dest="json_out", default=None)
        parser.add_argument("--reference", default=None, help="same lines with clean labels: prints precision@k")
        parser.add_argument("--backbone", default=None)
        parser.add_argument("--folds", type=int, default=5)
        parser.add_argument("--inject-noise", type=float, default=0.0, help="flip this share of labels first")
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--top", type=int, default=20, help="how many suspects to print")

    def handle(self, *args: Any, **opts: Any) -> None:
        if not 0.0 <= opts["inject_noise"] < 1.0:
            raise CommandError("--inject-noise must be in [0, 1)")
        if opts["inject_noise"] and opts["reference"]:
            raise CommandError("use either --inject-noise or --reference, not both")
        try:
            train = read_labelled_jsonl(opts["train"])
            reference = read_labelled_jsonl(opts["reference"]) if opts["reference"] else None
            if opts["inject_noise"]:
                train, reference = inject_noise(train, opts["inject_noise"], opts["seed"])
            report = check_labelled_file(
                train, reference, n_folds=opts["folds"], seed=opts["seed"], backbone=opts["backbone"]
            )
        except (ServiceError, ValueError) as exc:
            raise CommandError(getattr(exc, "message", str(exc))) from exc
        self.stdout.write(f"{report['n']} items, {report['n_flagged']} flagged, {len(report['conflicts'])} conflicts")
        for row in report["ranked"][: opts["top"]]:
            self.stdout.write(
                f"line {row['line']:>6}  given={row['given']}  suggested={row['suggested']}  "
                f"p(given)={row['quality']:.3f}{'  FLAGGED' if row['flagged'] else ''}"
            )
        if "precision_at_k" in report:
            self.stdout.write(f"{report['n_wrong']} labels differ from the reference")
            for k, value in report["precision_at_k"].items():
                self.stdout.write(f"precision@{k} = {value:.3f}")
            self.stdout.write(f"precision in the top 10% = {report['precision_top_10pct']:.3f}")
            plain = report["precision_top_10pct_self_confidence_only"]
            self.stdout.write(f"  (ranking by P(given label) alone: {plain:.3f})")
        if opts["json_out"]:
            Path(opts["json_out"]).write_text(json.dumps(report, ensure_ascii=False, indent=1), encoding="utf-8")


def inject_noise(train: LabelledFile, share: float, seed: int) -> tuple[LabelledFile, LabelledFile]:
    classes = sorted(set(train.labels))
    index = {key: i for i, key in enumerate(classes)}
    noisy, _ = quality.flip_labels(np.array([index[k] for k in train.labels]), len(classes), share, seed)
    return LabelledFile(train.texts, [classes[i] for i in noisy]), train
