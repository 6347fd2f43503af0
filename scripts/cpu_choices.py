"""Two choices of a CPU roadmap, measured side by side in one run: runs at once (`--jobs`) and torch.compile.

    python scripts/cpu_choices.py jobs [--rounds 2] [--steps a,b,c] [--seeds 2] [--epochs 2]
    python scripts/cpu_choices.py compile [--steps a,b,c] [--seeds 2] [--jobs 2] [--epochs 3] [RUN FLAGS ...]

**jobs**: the same small roadmap (`roadmap run --preset cpu --dataset fashion-mnist`, `--same-epochs`, each into a
fresh directory) trained as 1 job x all threads and as N jobs x 1 thread, alternating A, B, A, B so that a noisy
machine hits both alike. The whole machine's training images/s is the images the runs trained (epochs x the
preset's batches per epoch) over the command's wall time, start-up and evaluation included.

**compile**: per step, the same run eager and with `--compile`, one after the other, `--epochs` epochs each. From the
runs' own records (metrics.jsonl): the first epoch (which pays for compiling), a middle epoch (steady; it evaluates
the preset's monitor subset) and the last (it evaluates the whole validation set), and from them a 10-epoch run:
first + 8 x middle + last.
`--seeds` and `--jobs` are the runs' (2 and 2: compiled as two jobs would compile), other arguments are passed
to `roadmap run` (e.g. `--threads-per-job 1`). docs/bench-cpu.md holds the measured tables, with these commands.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from roadmap.schema import EpochMetrics, RunConfig, RunResult
from runner.store import RunDir

BASE = ["--preset", "cpu", "--dataset", "fashion-mnist", "--same-epochs", "--quiet", "--no-report"]


def roadmap_run(out: Path, steps: str, extra: list[str]) -> float:
    """Wall seconds of one `roadmap run` into `out` (a fresh directory)."""
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "roadmap", "run", *BASE, "--steps", steps, "--out", str(out), *extra],
                   check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def records(out: Path) -> list[tuple[RunConfig, RunResult, list[EpochMetrics]]]:
    """(config, result, epochs) of every finished run in `out`, read by the run store."""
    runs = [RunDir(p) for p in sorted(out.iterdir()) if RunDir(p).done]
    return [(r.read_config(), r.read_result(), r.read_metrics()) for r in runs]


def trained_images(out: Path) -> int:
    return sum(len(m) * c.budget.train_batches * c.budget.batch_size for c, _, m in records(out))


def jobs(args: argparse.Namespace, tmp: Path) -> None:
    configs = {"1 job x 2 threads": [], f"{args.jobs} jobs x 1 thread": ["--jobs", str(args.jobs),
                                                                          "--threads-per-job", "1"]}
    common = ["--seeds", str(args.seeds), "--epochs", str(args.epochs)]
    rates: dict[str, list[float]] = {name: [] for name in configs}
    print("| round | configuration | wall s | images | machine img/s |\n|---|---|---|---|---|")
    for round_ in range(args.rounds):
        for name, flags in configs.items():
            out = tmp / f"jobs-{round_}-{name.split()[0]}"
            wall = roadmap_run(out, args.steps, common + flags)
            images = trained_images(out)
            rates[name].append(images / wall)
            print(f"| {round_ + 1} | {name} | {wall:.1f} | {images} | {images / wall:.0f} |", flush=True)
    (a, ra), (b, rb) = rates.items()
    ratios = [y / x for x, y in zip(ra, rb, strict=True)]
    print(f"\n{b} / {a}, per round: {', '.join(f'{r:.2f}' for r in ratios)}; median {statistics.median(ratios):.2f}")


def compile_(args: argparse.Namespace, extra: list[str], tmp: Path) -> None:
    print("| step | mode | runs | first epoch s | middle epoch s | last epoch s | compile s (recorded) "
          "| 10 epochs s |\n"
          "|---|---|---|---|---|---|---|---|")
    for step in args.steps.split(","):
        ten = {}
        for mode, flags in (("eager", []), ("compiled", ["--compile"])):
            out = tmp / f"compile-{step}-{mode}"
            roadmap_run(out, step, ["--epochs", str(args.epochs), "--seeds", str(args.seeds), "--jobs", str(args.jobs),
                                    *extra, *flags])
            rows = records(out)
            first = statistics.mean(m[0].seconds for _, _, m in rows)
            later = statistics.mean(statistics.mean(e.seconds for e in m[1:-1]) for _, _, m in rows)
            last = statistics.mean(m[-1].seconds for _, _, m in rows)  # the full evaluation
            recorded = [r.compile_seconds for _, r, _ in rows if r.compile_seconds is not None]
            ten[mode] = first + 8 * later + last
            compiled = f"{statistics.mean(recorded):.1f}" if recorded else "-"
            print(f"| `{step}` | {mode} | {len(rows)} | {first:.1f} | {later:.1f} | {last:.1f} | {compiled} | "
                  f"{ten[mode]:.0f} |", flush=True)
        print(f"| `{step}` | compiled / eager over 10 epochs | | | | | | {ten['compiled'] / ten['eager']:.2f} |",
              flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("what", choices=["jobs", "compile"])
    parser.add_argument("--steps", default="resnet50,large_kernel,convnext_tiny")
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=None, help="default: jobs 2, compile 3")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--jobs", type=int, default=2)
    args, extra = parser.parse_known_args()
    args.epochs = args.epochs or (2 if args.what == "jobs" else 3)
    if args.what == "compile" and args.epochs < 3:
        parser.error("--epochs must be at least 3: a middle epoch is the steady time, the last evaluates the "
                     "whole validation set")
    with tempfile.TemporaryDirectory() as tmp:
        if args.what == "jobs":
            jobs(args, Path(tmp))
        else:
            compile_(args, extra, Path(tmp))


if __name__ == "__main__":
    main()
