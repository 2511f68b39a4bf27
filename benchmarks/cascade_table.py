"""The sweep of an `evaluate_dataset --cascade` result as a Markdown table (docs/BENCHMARKS.md, "The cascade").

python benchmarks/cascade_table.py var/bench/cascade_lora.json"""

from __future__ import annotations

import json
import sys


def main(path: str) -> None:
    with open(path, encoding="utf-8") as handle:
        result = json.load(handle)
    cascade = result["cascade"]
    print(f"primary threshold {result['threshold']:.3f}; before {cascade['before']}; after {cascade['after']}")
    print(f"re-check: {cascade['recheck_train_seconds']} s training, {cascade['recheck_ms_per_text']} ms a text; "
          f"one text through the cascade {result['predict_ms_per_text']} ms")  # fmt: skip
    print("| tau | share re-checked | rule | accuracy | macro-F1 | coverage | selective acc. | "
          "re-checked acc. before → after | changed (now right / had been right) |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|")
    for p in cascade["sweep"]:
        print(f"| {p['tau']:.3f} | {p['share_rechecked']:.3f} | {p['rule']} | {p['accuracy']:.4f} | "
              f"{p['macro_f1']:.4f} | {p['coverage']:.3f} | {p['selective_accuracy']} | "
              f"{p['rechecked_accuracy_before']} → {p['rechecked_accuracy_after']} | "
              f"{p['n_changed']} ({p['changed_now_right']} / {p['changed_was_right']}) |")  # fmt: skip


if __name__ == "__main__":
    main(sys.argv[1])
