from __future__ import annotations

import json

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from labeling.models import Item, Project
from modeling.models import ModelVersion
from tests.modeling.route1 import scene_texts


@pytest.fixture(scope="module")
def tiny_decoder_path(tmp_path_factory):
    from tests.engine.tiny import make_tiny_backbone

    path = tmp_path_factory.mktemp("tiny-decoder") / "tiny-qwen"
    make_tiny_backbone(path, kind="decoder", texts=[text for text, _ in scene_texts(20)])
    return path


def _write(path, rows):
    path.write_text("".join(json.dumps({"text": t, "label": lab}, ensure_ascii=False) + "\n" for t, lab in rows))


@pytest.mark.django_db
def test_evaluate_dataset_runs_the_app_and_cleans_up(tmp_path, tiny_backbone, capsys):
    # "oos" is the dataset's out-of-scope label; "支付/付款" needs a safe taxonomy key.
    rows = [(t, {"其他": "oos", "支付": "支付/付款"}.get(lab, lab)) for t, lab in scene_texts(20)]
    files = {"train": rows[0::2], "val": rows[1::4], "test": rows[3::4]}
    for split, split_rows in files.items():
        _write(tmp_path / f"{split}.jsonl", split_rows)
    out = tmp_path / "result.json"

    call_command(
        "evaluate_dataset",
        "--train", str(tmp_path / "train.jsonl"), "--val", str(tmp_path / "val.jsonl"),
        "--test", str(tmp_path / "test.jsonl"), "--backbone", str(tiny_backbone),
        "--fallback-label", "oos", "--params", '{"max_epochs": 20}', "--json", str(out),
    )  # fmt: skip

    result = json.loads(out.read_text())
    for key in ("accuracy", "macro_f1", "ece_before", "ece_after", "temperature", "threshold", "coverage",
                "selective_accuracy", "extract_texts_per_s", "train_seconds", "predict_ms_per_text",
                "in_scope_accuracy", "oos_recall", "oos_precision"):  # fmt: skip
        assert key in result, key
    assert result["n_train"] == len(files["train"]) and result["n_test"] == len(files["test"])
    assert 0.0 <= result["macro_f1"] <= 1.0 and result["extract_texts_per_s"] > 0
    assert result["train_seconds"] > 0 and result["predict_ms_per_text"] > 0
    assert json.loads(capsys.readouterr().out)["macro_f1"] == result["macro_f1"]
    # The engine alone: no project, item or version was created.
    assert not Project.objects.exists() and not Item.objects.exists() and not ModelVersion.objects.exists()


@pytest.mark.django_db
def test_evaluate_dataset_reports_missing_file(tmp_path):
    with pytest.raises(CommandError, match="does not exist"):
        call_command("evaluate_dataset", "--train", "x", "--val", "y", "--test", str(tmp_path / "nope.jsonl"))


@pytest.mark.django_db
def test_a_dataset_with_its_own_qita_label_trains_it_as_the_fallback(tmp_path, tiny_backbone):
    # 其他 is an ordinary label of the files (no --fallback-label): it becomes the fallback and a trained class.
    rows = scene_texts(20)
    files = {"train": rows[0::2], "val": rows[1::4], "test": rows[3::4]}
    for split, split_rows in files.items():
        _write(tmp_path / f"{split}.jsonl", split_rows)
    out = tmp_path / "result.json"

    call_command(
        "evaluate_dataset",
        "--train", str(tmp_path / "train.jsonl"), "--val", str(tmp_path / "val.jsonl"),
        "--test", str(tmp_path / "test.jsonl"), "--backbone", str(tiny_backbone),
        "--params", '{"max_epochs": 20}', "--json", str(out),
    )  # fmt: skip

    result = json.loads(out.read_text())
    assert result["calibration_items"]["untrained_classes"] == []  # 其他 had training examples
    # With out-of-scope examples in train, the default rule catches the most at in-scope accuracy >= 0.95.
    assert "in-scope val accuracy >= 0.95" in result["calibration_items"]["ood_threshold"]["rule"]
    assert set(result["val_and_test"]) == {"in_scope_accuracy", "oos_recall"}
    assert result["calibration_items"]["split"] == "val"
    assert result["oos_recall"] is not None and result["in_scope_accuracy"] is not None


@pytest.mark.django_db
def test_out_of_scope_only_in_val_is_left_out_of_the_temperature(tmp_path, tiny_backbone):
    rows = scene_texts(20)
    in_scope = [r for r in rows if r[1] != "其他"]
    oos = [(t, "oos") for t, lab in rows if lab == "其他"]
    files = {"train": in_scope[0::2], "val": in_scope[1::4] + oos[0::2], "test": in_scope[3::4] + oos[1::2]}
    for split, split_rows in files.items():
        _write(tmp_path / f"{split}.jsonl", split_rows)
    out = tmp_path / "result.json"

    call_command(
        "evaluate_dataset",
        "--train", str(tmp_path / "train.jsonl"), "--val", str(tmp_path / "val.jsonl"),
        "--test", str(tmp_path / "test.jsonl"), "--backbone", str(tiny_backbone), "--fallback-label", "oos",
        "--params", '{"max_epochs": 20}', "--json", str(out),
    )  # fmt: skip

    items = json.loads(out.read_text())["calibration_items"]
    assert items["val_excluded_untrained_class"] == len(oos[0::2]) and items["untrained_classes"] == ["oos"]
    assert items["n"] == len(files["val"]) - len(oos[0::2])
    assert items["ood_threshold"]["n_out_of_scope"] == len(oos[0::2])
    assert "turns away at most" in items["ood_threshold"]["rule"]  # untrained fallback: precision 0.97 as before


def test_pooled_figures_weigh_each_split_by_its_texts():
    from modeling.engine.evaluation.dataset import pooled as _pooled

    val = {"in_scope_accuracy": 1.0, "oos_recall": 0.5, "n_oos": 10}
    test = {"in_scope_accuracy": 0.8, "oos_recall": 1.0, "n_oos": 30}
    assert _pooled(val, 110, test, 130) == {"in_scope_accuracy": 0.9, "oos_recall": 0.875}
    assert _pooled({}, 110, test, 130) == {"in_scope_accuracy": None, "oos_recall": None}


def _taxonomy_file(path, keys):
    from labeling.taxonomy_io import LabelSpec, build_document, dump_document

    specs = [LabelSpec(key=k, name=f"{k}场景", definition=f"关于{k}的反馈", examples=[f"{k}的问题"]) for k in keys]
    specs.append(LabelSpec(key="其他", name="其他", is_fallback=True))
    path.write_text(dump_document(build_document(project="x", number=1, status="published", notes="", labels=specs),
                                  "yaml"), encoding="utf-8")  # fmt: skip


@pytest.mark.django_db
def test_a_taxonomy_file_gives_the_label_set_and_an_unknown_label_is_named(tmp_path, tiny_backbone):
    rows = scene_texts(20)
    files = {"train": rows[0::2], "val": rows[1::4], "test": rows[3::4]}
    for split, split_rows in files.items():
        _write(tmp_path / f"{split}.jsonl", split_rows)
    keys = ["账户", "售后", "支付", "物流", "旅行"]
    _taxonomy_file(tmp_path / "tax.yaml", keys)
    out = tmp_path / "result.json"
    args = ["--train", str(tmp_path / "train.jsonl"), "--val", str(tmp_path / "val.jsonl"),
            "--test", str(tmp_path / "test.jsonl"), "--backbone", str(tiny_backbone),
            "--params", '{"max_epochs": 5}']  # fmt: skip

    call_command("evaluate_dataset", *args, "--taxonomy", str(tmp_path / "tax.yaml"), "--json", str(out))
    result = json.loads(out.read_text())
    assert result["label_keys"] == [*keys, "其他"] and result["fallback_key"] == "其他"

    _taxonomy_file(tmp_path / "small.yaml", keys[:-1])
    with pytest.raises(CommandError, match="旅行"):
        call_command("evaluate_dataset", *args, "--taxonomy", str(tmp_path / "small.yaml"))


def test_robustness_reports_each_perturbation_of_the_test_set(tmp_path):
    rows = scene_texts(20)
    for split, split_rows in {"train": rows[0::2], "val": rows[1::4], "test": rows[3::4]}.items():
        _write(tmp_path / f"{split}.jsonl", split_rows)
    out = tmp_path / "result.json"

    call_command(
        "evaluate_dataset", "--route", "tfidf",
        "--train", str(tmp_path / "train.jsonl"), "--val", str(tmp_path / "val.jsonl"),
        "--test", str(tmp_path / "test.jsonl"), "--robustness", "--json", str(out),
    )  # fmt: skip

    robustness = json.loads(out.read_text())["robustness"]
    assert set(robustness) >= {"clean", "typos", "noise", "truncate", "concat"}
    for name in ("typos", "noise", "truncate", "concat"):
        figures = robustness[name]
        assert figures["n"] == len(rows[3::4]) and 0.0 <= figures["macro_f1"] <= 1.0
        assert figures["drop_macro_f1"] == pytest.approx(
            robustness["clean"]["macro_f1"] - figures["macro_f1"], abs=1e-5
        )


@pytest.mark.django_db
def test_zero_shot_needs_only_the_test_file_and_a_taxonomy(tmp_path, tiny_backbone):
    keys = ["账户", "售后", "支付", "物流", "旅行"]
    _taxonomy_file(tmp_path / "tax.yaml", keys)
    _write(tmp_path / "test.jsonl", scene_texts(4))
    out = tmp_path / "result.json"

    call_command(
        "evaluate_dataset", "--route", "zero_shot", "--test", str(tmp_path / "test.jsonl"),
        "--taxonomy", str(tmp_path / "tax.yaml"), "--json", str(out),
        "--params", json.dumps({"method": "encoder", "encoder": str(tiny_backbone)}),
    )  # fmt: skip

    result = json.loads(out.read_text())
    assert result["label_keys"] == [*keys, "其他"] and result["n_train"] == 0
    assert result["n_test"] == len(scene_texts(4)) and 0.0 <= result["macro_f1"] <= 1.0
    assert result["temperature"] == 1.0 and "not calibrated" in result["warning"]


@pytest.mark.django_db
def test_evaluate_dataset_with_a_cascade_reports_before_and_after(tmp_path, tiny_decoder_path):
    rows = scene_texts(20)
    files = {"train": rows[0::2], "val": rows[1::4], "test": rows[3::4]}
    for split, split_rows in files.items():
        _write(tmp_path / f"{split}.jsonl", split_rows)
    out = tmp_path / "result.json"
    lora = {"backbone": str(tiny_decoder_path), "dtype": "fp32", "epochs": 0.2, "batch_size": 8}

    call_command(
        "evaluate_dataset", "--route", "tfidf", "--cascade", "lora", "--cascade-params", json.dumps(lora),
        "--train", str(tmp_path / "train.jsonl"), "--val", str(tmp_path / "val.jsonl"),
        "--test", str(tmp_path / "test.jsonl"), "--recheck-tau", "1.0", "--json", str(out),
    )  # fmt: skip

    result = json.loads(out.read_text())
    cascade = result["cascade"]
    assert cascade["route"] == "lora" and cascade["tau"] == 1.0 and cascade["rule"] == "product"
    assert 0.0 < cascade["share_rechecked"] <= 1.0
    assert result["accuracy"] == cascade["after"]["accuracy"] and result["route"] == "tfidf"
    assert set(cascade["before"]) >= {"accuracy", "macro_f1", "coverage", "selective_accuracy"}
    assert {point["rule"] for point in cascade["sweep"]} == {"product", "recheck_only", "more_confident"}
    assert cascade["rules"]["product"]["accuracy"] == cascade["after"]["accuracy"]
    with pytest.raises(CommandError, match="invalid choice"):
        call_command("evaluate_dataset", "--route", "tfidf", "--cascade", "lora", "--combine", "vote",
                     "--train", str(tmp_path / "train.jsonl"), "--val", str(tmp_path / "val.jsonl"),
                     "--test", str(tmp_path / "test.jsonl"))  # fmt: skip
