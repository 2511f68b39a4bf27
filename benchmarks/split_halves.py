"""Split a labelled JSONL file into two halves, A (to tune on) and B (to test on), reproducibly.

CIC and CLINC150 ship no separate test file here, so the benchmarks tune on one half of dev/val and test on
the other:  python benchmarks/split_halves.py /path/dev.jsonl /tmp/evalc/cic_dev  ->  cic_dev_a/_b.jsonl
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", type=Path)
    parser.add_argument("prefix", help="output prefix; writes PREFIX_a.jsonl and PREFIX_b.jsonl")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    lines = [line for line in args.source.read_text(encoding="utf-8").splitlines() if line.strip()]
    random.Random(args.seed).shuffle(lines)
    half = len(lines) // 2
    for suffix, part in (("a", lines[:half]), ("b", lines[half:])):
        out = Path(f"{args.prefix}_{suffix}.jsonl")
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text("\n".join(part) + "\n", encoding="utf-8")
        print(f"{out}: {len(part)} lines")


if __name__ == "__main__":
    main()
