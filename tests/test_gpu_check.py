"""scripts/gpu-check.sh on CPU (issue 20): its plan (every part, its command and time limit, a total under 8 minutes),
its one line without CUDA, and its parts' mechanics with stand-in parts (GPU_CHECK_PARTS): a failing part does not
stop the later ones, a part past its limit is interrupted with SIGINT and keeps what it printed, the script's budget
cuts the last parts, a failed smoke check skips the compile parts with its reason, and the doc says how each ended."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "gpu-check.sh"


def gpu_check(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHON": sys.executable, **env})


def test_the_plan_shows_every_part_its_limit_and_a_total_under_8_minutes():
    plan = gpu_check("--plan")
    assert plan.returncode == 0, plan.stderr
    parts = re.findall(r"^  (\S+)\s+(\d+) s  (.*)$", plan.stdout, re.M)
    assert [p[0] for p in parts] == ["smoke", "tests", "run", "bench", "precision", "bench-compile", "compile-test"]
    limits = {name: int(limit) for name, limit, _ in parts}
    commands = {name: command for name, _, command in parts}
    total = int(re.search(r"total: (\d+) s", plan.stdout).group(1))
    assert total == sum(limits.values()) < 8 * 60
    ends_by = int(re.search(r"ends by (\d+) s", plan.stdout).group(1))
    assert ends_by < 8 * 60  # the budget, SIGKILL's grace for the last part and the doc
    assert limits["smoke"] <= 20
    estimate = re.search(r"its estimate: (\d+) s = (.*)", plan.stdout)
    assert int(estimate.group(1)) == limits["bench-compile"] and "training graph" in estimate.group(2)
    assert commands["bench-compile"].endswith("--compile --no-reference --steps convnext_tiny")  # only convnext_tiny
    assert "--deselect tests/test_cuda.py::test_compile_has_no_recompiles_after_warm_up" in commands["tests"]
    assert commands["compile-test"].endswith("tests/test_cuda.py::test_compile_has_no_recompiles_after_warm_up")
    assert "--format markdown" in commands["bench"] and "--device cuda" in commands["run"]
    assert "--precision bf16,fp16" in commands["precision"] and "--models-only" in commands["precision"]


def test_without_cuda_it_says_so_in_one_line_and_exits_2():
    done = gpu_check()
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and "no CUDA GPU here" in done.stderr


def _parts(tmp_path: Path, lines: list[str]) -> dict[str, str]:
    parts = tmp_path / "parts"
    parts.write_text("".join(line + "\n" for line in lines))
    return {"GPU_CHECK_PARTS": str(parts), "GPU_CHECK_DOC": str(tmp_path / "doc.md"), "GPU_CHECK_LOG": str(tmp_path)}


ROWS = "print('| step | img/s |'); print('|---|---|'); print('| first | 1 |')"


def test_parts_fail_and_time_out_without_stopping_the_others_and_keep_their_rows(tmp_path):
    env = _parts(tmp_path, [
        "tests 10 echo 'a line'; echo 'it broke' >&2; exit 3",
        f"bench 3 {sys.executable} -c \"import time; {ROWS}; time.sleep(60)\"",  # buffered without PYTHONUNBUFFERED
        "run 10 echo 'epoch 1/1 done'",
    ])
    done = gpu_check(**env)
    assert done.returncode == 1, done.stderr
    doc = (tmp_path / "doc.md").read_text()
    assert "| tests | failed (exit 3) after" in doc and "it broke" in doc  # its last lines
    assert re.search(r"\| bench \| timed out after [34] s \(limit 3 s\)", doc)
    assert "Rows measured before the limit:\n\n| step | img/s |\n|---|---|\n| first | 1 |" in doc
    assert "KeyboardInterrupt" in doc  # SIGINT: Python stopped as on Ctrl-C, not killed
    assert "| run | ok in" in doc and "epoch 1/1 done" in doc  # the part after them still ran


def test_the_budget_cuts_the_last_parts_and_a_failed_smoke_check_skips_the_compile_parts(tmp_path):
    env = _parts(tmp_path, [
        "smoke 5 echo 'no C compiler (cc, gcc or clang) on PATH: inductor needs one' >&2; exit 1",
        "bench-compile 5 echo NEVER_RAN",
        "tests 5 sleep 2",
        "bench 5 echo too late",
    ])
    done = gpu_check(**env, GPU_CHECK_BUDGET="6")
    doc = (tmp_path / "doc.md").read_text()
    assert "| bench-compile | skipped: the torch.compile smoke check failed (exit 1)" in doc
    assert "no C compiler" in doc and doc.count("NEVER_RAN") == 1  # (in its command)
    assert "| tests | ok in" in doc and "| bench | skipped: no time left of the 6 s |" in doc
    assert done.returncode == 1  # a part left out for time is not a measurement
