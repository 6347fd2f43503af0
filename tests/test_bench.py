"""`roadmap bench` on CPU: the pipeline comparison and the model-only comparison produce consistent tables."""

import json

import pytest

TINY = ["--device", "cpu", "--dataset", "synthetic:train=96,val=32", "--preset", "smoke", "--batch-size", "16",
        "--warmup", "1", "--iters", "2", "--workers", "0"]


def test_pipeline_bench_compares_our_loop_with_the_reference_loop(cli):
    code, out, err = cli("bench", *TINY, "--steps", "resnet50,convnext_tiny", "--format", "json")
    assert code == 0, err
    rows = json.loads(out[out.index("["):])
    assert [r["step"] for r in rows] == ["resnet50", "separate_downsampling"]
    assert [r["epochs"] for r in rows] == [30, 100]  # 100 epochs projected; the original recipe keeps 90:300
    for r in rows:
        assert r["train img/s"] > 0 and r["ref train img/s"] > 0 and r["batch"] == 16
        # (from the rounded images/s: a ratio far from 1 carries their rounding, hence the relative tolerance)
        assert r["train vs ref"] == pytest.approx(r["train img/s"] / r["ref train img/s"], rel=0.01, abs=0.01)
        assert r["eval vs ref"] == pytest.approx(r["eval img/s"] / r["ref eval img/s"], rel=0.01, abs=0.01)
        warm = r["warm-up s (1 steps)"]
        minutes = (r["epochs"] * (96 / r["train img/s"] + 32 / r["eval img/s"]) + warm) / 60
        assert r["projected min"] == pytest.approx(minutes, rel=0.01, abs=0.01)


def test_pipeline_bench_text_output_projects_the_total(cli):
    code, out, err = cli("bench", *TINY, "--steps", "convnext_tiny", "--no-reference", "--data-path", "device")
    assert code == 0, err
    assert "ref train img/s" not in out and "projected:" in out and "ours: images held on cpu" in out


def test_model_only_bench_measures_the_reference_models_too(cli):
    code, out, err = cli("bench", "--models-only", "--device", "cpu", "--steps", "resnet50", "--img-size", "32",
                         "--batch-size", "2", "--iters", "1", "--rounds", "1", "--format", "json")
    assert code == 0, err
    rows = {r["model"]: r for r in json.loads(out[out.index("["):])}
    assert set(rows) == {"resnet50", "torchvision resnet50"} and rows["resnet50"]["train vs ref"] > 0
