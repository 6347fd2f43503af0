"""`roadmap steps|show|diff|flops`, and one-line errors with exit code 2."""

import os
import subprocess
import sys

import pytest


def test_steps_table(cli):
    code, out, _ = cli("steps")
    assert code == 0
    for name in ("resnet50", "kernel_5 (branch)", "separate_downsampling", "81.97", "2.35"):
        assert name in out


def test_steps_markdown_and_csv(cli):
    assert cli("steps", "--format", "markdown")[1].startswith("|")
    assert cli("steps", "--format", "csv")[1].splitlines()[0].startswith("#,step,section")


def test_show_reads_like_an_architecture_table(cli):
    code, out, _ = cli("show", "convnext_tiny")
    assert code == 0
    assert "[7x7 dw 384, 1x1 1536, 1x1 384] x9" in out
    assert "384x14x14" in out and "28589128" in out and "4.456" in out
    assert "net.layer_scale" in out and "recipe.optimizer" in out


def test_show_at_another_size(cli):
    code, out, _ = cli("show", "resnet50", "--img-size", "160", "--num-classes", "10")
    assert code == 0 and "2048x5x5" in out


def test_diff(cli):
    code, out, _ = cli("diff", "gelu", "fewer_activations")
    assert code == 0
    assert "net.act_after" in out and "net.stem_act" in out and "+0" in out


@pytest.mark.parametrize("argv, message", [
    (["show", "larg_kernel"], "Did you mean 'large_kernel'"),
    (["diff", "gelu", "nope"], "unknown step 'nope'"),
    (["flops", "--format", "xml"], "invalid choice"),
    (["flops", "--img-size", "-3"], "must be positive"),
    (["flops", "--img-size", "abc"], "whole number"),
    (["show", "convnext_tiny", "--img-size", "8"], "too small"),
    (["show", "gelu+gelu"], "applies once"),
    (["frobnicate"], "invalid choice"),
])
def test_bad_input_is_one_line_and_exit_2(cli, argv, message):
    code, out, err = cli(*argv)
    assert code == 2
    assert message in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_console_script_has_no_traceback():
    """Through a real process: what a user sees."""
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    proc = subprocess.run([sys.executable, "-m", "roadmap", "show", "convnxt_tiny"], capture_output=True, text=True,
                          env=env)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "Did you mean 'convnext_tiny'" in proc.stderr


LOOK = [["steps"], ["show", "convnext_tiny"], ["diff", "gelu", "layer_norm"], ["flops"],
        ["flops", "--regime", "resnet200"]]


@pytest.mark.parametrize("argv", LOOK, ids=lambda a: " ".join(a))
def test_looking_never_imports_torch_or_timm(argv):
    """`roadmap steps|show|diff|flops` read the description alone: a fresh process running them (and `import roadmap`,
    whose public names load lazily) has neither torch nor timm in `sys.modules` afterwards."""
    code = (
        "import contextlib, io, sys\n"
        "import roadmap\n"
        "from roadmap.cli import main\n"
        f"with contextlib.redirect_stdout(io.StringIO()):\n    code = main({argv!r})\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'timm', 'torchvision'))\n"
        "assert code == 0 and not heavy, (code, heavy[:5])\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_public_names_load_on_first_use():
    """`from roadmap import build_model` still works: the lazy attributes resolve to the modules that hold them."""
    import roadmap
    from roadmap.model import build_model

    assert roadmap.build_model is build_model and "build_model" in dir(roadmap)
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        roadmap.nope  # noqa: B018
