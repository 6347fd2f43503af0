"""A finished run exported as timm exports a model (`roadmap export`, docs/trained-models.md): one folder in the
layout of timm's `save_for_hf`, which `timm.create_model("local-dir:DIR", pretrained=True)` and `hf-hub:` read:

    config.json          architecture roadmap_<step>, num_classes, label_names, model_args (the network fields that
                         differ from the step's), pretrained_cfg (the run's input size, crop, interpolation, mean, std)
    model.safetensors    the weights (no pickle)
    README.md            the model card (written by the caller: reports.card, from the records)

The network is rebuilt through timm's entry point from those arguments and must take model.pt's weights strictly, so
an exported folder loads back to the very network the run trained.
"""

from __future__ import annotations

import os
from pathlib import Path

import timm
from timm.models import save_for_hf

import roadmap.timm_models  # noqa: F401  (registers timm.create_model("roadmap_<step>"))
from roadmap.errors import RoadmapError, first_line
from roadmap.schema import read_config
from roadmap.trained import WEIGHTS, base_step, design_of, model_args, pretrained_cfg, read_weights

__all__ = ["export_run", "push_to_hub", "hub_token"]

WRITTEN = ("config.json", "model.safetensors", "README.md")


def export_run(run_dir: Path, dest: Path, card: str) -> Path:
    """Write run `run_dir` into folder `dest` (config.json, model.safetensors, README.md `card`); return `dest`."""
    cfg = read_config(run_dir / "config.json")
    design_of(cfg, run_dir)  # a timm baseline run: one line
    args = model_args(cfg, run_dir)
    data = pretrained_cfg(cfg, run_dir)
    architecture = f"roadmap_{base_step(cfg)}"
    model = timm.create_model(architecture, num_classes=data["num_classes"], **args)
    try:
        model.load_state_dict(read_weights(run_dir / WEIGHTS))
    except RuntimeError as e:
        raise RoadmapError(f"{run_dir / WEIGHTS} does not fit the run's network ({first_line(e)[:160]})") from None
    model.eval()
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("pytorch_model.bin", "open_clip_pytorch_model.bin"):  # a pickle from an older export
        (dest / name).unlink(missing_ok=True)
    data_config = {k: data[k] for k in ("input_size", "crop_pct", "crop_mode", "interpolation", "mean", "std")}
    model_config = {"label_names": data["label_names"],
                    "pretrained_cfg": {k: data[k] for k in ("license", "paper_ids", "paper_name")}}
    save_for_hf(model, str(dest), model_config=model_config, model_args=args, safe_serialization=True,
                data_config=data_config)
    (dest / "README.md").write_text(card)
    return dest


def hub_token() -> str | None:
    """The Hugging Face token huggingface_hub would use (HF_TOKEN or `huggingface-cli login`), or None."""
    try:
        from huggingface_hub import get_token
    except ImportError:
        return None
    return get_token()


def check_hub() -> None:
    """One line saying what an upload lacks (the package, a token), or nothing."""
    try:
        import huggingface_hub  # noqa: F401
    except ImportError:
        raise RoadmapError("--push-to-hub needs huggingface_hub: pip install huggingface_hub") from None
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        raise RoadmapError("--push-to-hub: HF_HUB_OFFLINE is set, so nothing can be uploaded; unset it")
    if not hub_token():
        raise RoadmapError("--push-to-hub needs a Hugging Face token with write access: set HF_TOKEN or run "
                           "`huggingface-cli login` (the folders can be exported without --push-to-hub)")


def push_to_hub(folder: Path, repo_id: str) -> str:
    """Upload an exported folder to the Hub as model repo `repo_id` (created if needed); return its URL."""
    check_hub()
    from huggingface_hub import HfApi

    api = HfApi(token=hub_token(), library_name="timm", library_version=timm.__version__)
    try:
        url = api.create_repo(repo_id, repo_type="model", exist_ok=True)
        api.upload_folder(repo_id=repo_id, folder_path=str(folder), allow_patterns=list(WRITTEN),
                          commit_message="roadmap export")
    except Exception as e:  # no network, a refused token, a name taken: huggingface_hub raises many kinds
        raise RoadmapError(f"cannot upload {folder} to the Hub as {repo_id} ({first_line(e)[:160]})") from None
    return str(url)
