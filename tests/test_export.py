"""`roadmap export OUT --to DIR` (issue #33 item 3): one folder per step in timm's `save_for_hf` layout, which a fresh
process that imports only timm and roadmap.timm_models loads with `local-dir:` to logits bit-identical to
`load_run`'s; no pickle; a model card whose numbers are those of `roadmap results`; one line and exit 2 for damaged or
missing weights and for what an upload lacks. The upload itself cannot run here (no network): it is tested up to the
huggingface_hub call.

One tiny result directory is trained once for the module (smoke preset, synthetic data): gelu and layer_norm,
2 seeds each.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from test_trained import train

from reports.table import fmt_gflops, fmt_num, fmt_top1
from roadmap import load_run

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def result_dir(tmp_path_factory) -> Path:
    return train(tmp_path_factory.mktemp("export") / "out", "--steps", "gelu,layer_norm", "--seeds", "2")


@pytest.fixture(scope="module")
def exported(result_dir, tmp_path_factory) -> Path:
    from roadmap.cli import main

    to = tmp_path_factory.mktemp("exported") / "models"
    assert main(["export", str(result_dir), "--to", str(to), "--seed", "best"]) == 0
    return to


def results(result_dir: Path, cli) -> dict[str, dict]:
    code, text, err = cli("results", str(result_dir), "--format", "json")
    assert code == 0, err
    return {row["step"]: row for row in json.loads(text)}


def test_one_folder_per_step_in_save_for_hf_layout_and_no_pickle(exported, result_dir, cli):
    assert sorted(p.name for p in exported.iterdir()) == ["gelu", "layer_norm"]
    for folder in exported.iterdir():
        assert sorted(p.name for p in folder.iterdir()) == ["README.md", "config.json", "model.safetensors"]
        for f in folder.iterdir():  # neither a pickle (protocol 2+: 0x80) nor torch.save's zip of one
            head = f.read_bytes()[:4]
            assert head[:1] != b"\x80" and head != b"PK\x03\x04", f
    config = json.loads((exported / "gelu" / "config.json").read_text())
    run = json.loads((load_run(result_dir, "gelu", "best").path / "config.json").read_text())
    recipe = run["design"]["recipe"]
    assert config["architecture"] == "roadmap_gelu" and config["num_classes"] == 10
    assert config["label_names"] == run["dataset"]["classes"]
    assert {k: config["model_args"][k] for k in ("stem_stride", "width_mult", "depth_mult")} == {
        k: run["design"]["net"][k] for k in ("stem_stride", "width_mult", "depth_mult")}
    cfg = config["pretrained_cfg"]
    assert cfg["input_size"] == [3, run["budget"]["img_size"], run["budget"]["img_size"]]
    assert (cfg["crop_pct"], cfg["interpolation"]) == (recipe["eval_crop_pct"], recipe["eval_interpolation"])
    assert (cfg["mean"], cfg["std"]) == ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
    assert (cfg["license"], cfg["paper_ids"]) == ("mit", "arXiv:2201.03545")


FRESH = """
import sys, torch, timm
import roadmap.timm_models
model = timm.create_model("local-dir:" + sys.argv[1], pretrained=True).eval()
x = torch.load(sys.argv[2], weights_only=True)
with torch.no_grad():
    torch.save(model(x), sys.argv[3])
extra = sorted(m for m in sys.modules if m.split(".")[0] in ("runner", "reports") or m in ("roadmap.trained",
               "roadmap.export", "roadmap.cli"))
print(extra, model.pretrained_cfg["input_size"], timm.data.resolve_data_config(model=model)["crop_pct"])
"""


@pytest.mark.parametrize("step", ["gelu", "layer_norm"])
def test_a_fresh_process_loads_the_folder_to_logits_bit_identical_to_load_run(exported, result_dir, tmp_path, step):
    run = load_run(result_dir, step, "best")
    x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    torch.save(x, tmp_path / "x.pt")
    out = subprocess.run([sys.executable, "-c", FRESH, str(exported / step), str(tmp_path / "x.pt"),
                          str(tmp_path / "y.pt")], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("]")[0] == "[" and f"(3, 32, 32) {run.data_config['crop_pct']}" in out.stdout
    with torch.no_grad():
        assert torch.equal(torch.load(tmp_path / "y.pt", weights_only=True), run.model(x))


def test_every_number_of_the_model_card_is_that_of_roadmap_results(exported, result_dir, cli):
    rows = results(result_dir, cli)
    run = load_run(result_dir, "gelu", "best")
    card = (exported / "gelu" / "README.md").read_text()
    row = rows["gelu"]
    assert card.startswith("---\nlibrary_name: timm\nlicense: mit\n")
    assert f"| top-1, all seeds (mean ± std, n) | {fmt_top1(row['top1_mean'], row['top1_std'], row['n'])} |" in card
    assert row["n"] == 2 and " ± " in card
    assert f"| top-1, this seed | {fmt_num(run.result.val_top1)} |" in card
    assert f"# roadmap_gelu (seed {run.config.seed})" in card
    assert f"| params, GFLOPs at 32 px | {row['params_m']:.2f} M, {fmt_gflops(row['gflops_run'])} |" in card
    assert f"| params, GFLOPs at 224 px, full size | {row['params_224_m']:.2f} M, {fmt_gflops(row['gflops_224'])} |" \
        in card
    assert f"| the paper | {row['paper_top1']:.2f} top-1 on ImageNet-1k at 224 px, " \
           f"{fmt_gflops(row['paper_gflops'])} GFLOPs |" in card
    assert f"| epochs | {row['epochs']:.0f} |" in card
    assert run.config.command in card and "arXiv:2201.03545" in card and run.config.dataset.name in card
    other = (exported / "layer_norm" / "README.md").read_text()
    ln = rows["layer_norm"]
    assert f"| top-1, all seeds (mean ± std, n) | {fmt_top1(ln['top1_mean'], ln['top1_std'], ln['n'])} |" in other


def test_the_seed_option_picks_the_run(result_dir, tmp_path, cli):
    for seed in ("0", "1", "median"):
        code, text, err = cli("export", str(result_dir), "--to", str(tmp_path / seed), "--steps", "gelu",
                              "--seed", seed)
        assert code == 0, err
        expected = load_run(result_dir, "gelu", int(seed) if seed.isdigit() else seed).config.seed
        assert f"gelu (seed {expected}): " in text
        assert f"# roadmap_gelu (seed {expected})" in (tmp_path / seed / "gelu" / "README.md").read_text()
    code, _, err = cli("export", str(result_dir), "--to", str(tmp_path / "x"), "--steps", "gelu", "--seed", "top")
    assert code == 2 and "is not a seed" in err


def error_line(code: int, err: str) -> str:
    assert code == 2 and "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.startswith("roadmap: error:")]
    assert len(lines) == 1 and len(err.strip().splitlines()) == 1, err
    return lines[0]


def test_damaged_or_missing_weights_are_one_line_and_exit_2(result_dir, tmp_path, cli):
    out = Path(shutil.copytree(result_dir, tmp_path / "out"))
    weights = load_run(out, "layer_norm", "median").path / "model.pt"
    weights.write_bytes(weights.read_bytes()[:1000])
    code, _, err = cli("export", str(out), "--to", str(tmp_path / "models"))
    assert "model.pt is damaged or not a weight file" in error_line(code, err)
    assert not (tmp_path / "models").exists()  # checked before anything is written
    weights.unlink()
    code, _, err = cli("export", str(out), "--to", str(tmp_path / "models"), "--steps", "layer_norm")
    assert "model.pt is missing" in error_line(code, err)
    code, _, err = cli("export", str(out), "--to", str(tmp_path / "models"), "--steps", "gelu")
    assert "pass a seed" not in err and code == 0  # --seed defaults to the median
    code, _, err = cli("export", str(tmp_path / "nowhere"), "--to", str(tmp_path / "models"))
    assert "does not exist" in error_line(code, err)


def test_push_to_hub_says_what_is_missing_and_otherwise_uploads_each_folder(result_dir, tmp_path, cli, monkeypatch):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # no stored token
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "get_token", lambda: None)
    args = ["export", str(result_dir), "--to", str(tmp_path / "models"), "--steps", "gelu", "--push-to-hub", "me"]
    code, _, err = cli(*args)
    assert "needs a Hugging Face token" in error_line(code, err) and not (tmp_path / "models").exists()
    calls = []
    monkeypatch.setattr(huggingface_hub, "get_token", lambda: "hf_test")

    class FakeApi:  # the network call itself cannot be made here: everything up to it is
        def __init__(self, token, **kw):
            calls.append(("token", token))

        def create_repo(self, repo_id, **kw):
            calls.append(("create", repo_id))
            return f"https://huggingface.co/{repo_id}"

        def upload_folder(self, repo_id, folder_path, allow_patterns, **kw):
            calls.append(("upload", repo_id, sorted(p.name for p in Path(folder_path).iterdir()),
                          sorted(allow_patterns)))

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    code, text, err = cli(*args)
    assert code == 0, err
    files = ["README.md", "config.json", "model.safetensors"]
    assert calls == [("token", "hf_test"), ("create", "me/roadmap_gelu"), ("upload", "me/roadmap_gelu", files, files)]
    assert "gelu: uploaded to https://huggingface.co/me/roadmap_gelu" in text

    class Offline(FakeApi):
        def create_repo(self, repo_id, **kw):
            raise OSError("Connection refused\nmore")

    monkeypatch.setattr(huggingface_hub, "HfApi", Offline)
    code, _, err = cli(*args)
    assert "cannot upload" in error_line(code, err) and "Connection refused" in err


def test_hf_hub_reads_the_folder_as_the_hub_would_serve_it(exported, result_dir, monkeypatch):
    """`hf-hub:ORG/NAME` through timm's own Hub reader, its download served from the exported folder (no network
    here): the same files asked for, the same logits as load_run."""
    import timm
    import timm.models._hub as hub

    asked = []

    def download(repo_id, filename, revision=None, cache_dir=None, **kw):
        asked.append((repo_id, filename))
        path = exported / "gelu" / filename
        if not path.is_file():
            raise FileNotFoundError(filename)
        return str(path)

    monkeypatch.setattr(hub, "hf_hub_download", download)
    model = timm.create_model("hf-hub:me/roadmap_gelu", pretrained=True).eval()
    assert asked == [("me/roadmap_gelu", "config.json"), ("me/roadmap_gelu", "model.safetensors")]
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        assert torch.equal(model(x), load_run(result_dir, "gelu", "best").model(x))
