"""Shared test settings: deterministic, single-threaded where it helps two CPU cores."""

import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("ROADMAP_QUIET", "1")
if os.environ.get("PYTEST_XDIST_WORKER"):  # one process per core (pyproject's -n auto): one torch thread each, and
    torch.set_num_threads(1)  # for the `roadmap` processes the tests start too (measured 1.26x for training here)
    os.environ.setdefault("OMP_NUM_THREADS", "1")


def pytest_collection_modifyitems(config, items):
    """Tests marked `cuda` need a GPU: skipped here when there is none (`pytest -m cuda` still collects them)."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (torch.cuda.is_available() is False)")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture
def cli(capsys):
    """Run the `roadmap` CLI in-process: (exit code, stdout, stderr), argparse exits included."""
    from roadmap.cli import main

    def run(*argv: str) -> tuple[int, str, str]:
        try:
            code = main(list(argv))
        except SystemExit as e:
            code = e.code
        out, err = capsys.readouterr()
        return code, out, err

    return run


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    """An empty data cache (tests/test_data*.py); no mirror; the real user cache is never touched."""
    monkeypatch.setenv("ROADMAP_DATA", str(tmp_path / "cache"))
    monkeypatch.delenv("ROADMAP_MIRROR", raising=False)
    return tmp_path / "cache"


@pytest.fixture
def one_thread():
    """One torch thread for the test (the device data tests compare samplers: no thread-count effects)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
