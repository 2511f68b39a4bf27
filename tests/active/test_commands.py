"""The command contracts on a tiny generated dataset with the tiny random backbone."""

from __future__ import annotations

import json

import pytest
from django.core.management import CommandError, call_command

from tests.modeling.route1 import scene_texts


def _write(path, rows):
    path.write_text("".join(json.dumps({"text": t, "label": y}, ensure_ascii=False) + "\n" for t, y in rows), "utf-8")
    return path


@pytest.fixture
def files(tmp_path):
    rows = scene_texts(40)
    pool = [r for i, r in enumerate(rows) if i % 4]
    test = [r for i, r in enumerate(rows) if not i % 4]
    return _write(tmp_path / "pool.jsonl", pool), _write(tmp_path / "test.jsonl", test), len(pool)


def test_simulate_json_contract_and_plot(files, tmp_path, tiny_backbone):
    pool, test, _ = files
    out, plot = tmp_path / "sim.json", tmp_path / "sim.png"
    call_command(
        "simulate_active_learning",
        "--train", str(pool), "--test", str(test), "--strategy", "all",
        "--seed-size", "12", "--batch-size", "6", "--rounds", "2",
        "--backbone", str(tiny_backbone), "--seed", "1", "--json", str(out), "--plot", str(plot),
    )  # fmt: skip
    result = json.loads(out.read_text())
    assert set(result) == {"full_pool_macro_f1", "strategies"}
    assert 0.0 <= result["full_pool_macro_f1"] <= 1.0
    assert set(result["strategies"]) == {"random", "least_confidence", "margin", "entropy", "margin_diverse"}
    for body in result["strategies"].values():
        assert set(body) == {"curve", "labels_to_95"}
        assert [p["labels"] for p in body["curve"]] == [12, 18, 24]
        for point in body["curve"]:
            assert set(point) == {"labels", "macro_f1", "accuracy"}
        reached = [p["labels"] for p in body["curve"] if p["macro_f1"] >= 0.95 * result["full_pool_macro_f1"]]
        assert body["labels_to_95"] == (reached[0] if reached else None)
    assert plot.read_bytes()[:4] == b"\x89PNG"


def test_simulate_one_strategy_and_bad_input(files, tmp_path, tiny_backbone):
    pool, test, _ = files
    out = tmp_path / "one.json"
    args = ["--train", str(pool), "--test", str(test), "--backbone", str(tiny_backbone)]
    call_command("simulate_active_learning", *args, "--strategy", "margin", "--rounds", "1", "--json", str(out))
    assert list(json.loads(out.read_text())["strategies"]) == ["margin"]
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"text": "ok", "label": "a"}\nnot json\n', "utf-8")
    with pytest.raises(CommandError, match=r"broken\.jsonl:2"):
        call_command("simulate_active_learning", "--train", str(broken), "--test", str(test))


def test_find_label_issues_reports_precision_against_a_reference(files, tmp_path, tiny_backbone):
    pool, _, n = files
    out = tmp_path / "issues.json"
    call_command(
        "find_label_issues", "--train", str(pool), "--backbone", str(tiny_backbone),
        "--inject-noise", "0.1", "--seed", "0", "--folds", "3", "--json", str(out),
    )  # fmt: skip
    report = json.loads(out.read_text())
    assert report["n"] == n and report["n_wrong"] == round(0.1 * n)
    assert sorted(row["line"] for row in report["ranked"]) == list(range(1, n + 1))
    assert 0.0 <= report["precision_top_10pct"] <= 1.0
    noisy = tmp_path / "noisy.jsonl"
    rows = [json.loads(line) for line in pool.read_text("utf-8").splitlines()]
    rows[0]["label"] = "物流" if rows[0]["label"] != "物流" else "支付"
    _write(noisy, [(r["text"], r["label"]) for r in rows])
    call_command(
        "find_label_issues", "--train", str(noisy), "--reference", str(pool), "--backbone", str(tiny_backbone),
        "--folds", "3", "--json", str(out),
    )  # fmt: skip
    assert json.loads(out.read_text())["n_wrong"] == 1
