"""Tables that describe steps and designs: what `roadmap steps|show|diff|flops` print.

Each function returns a pandas DataFrame; `render` turns one into text in the format the user asked for.
"""

from __future__ import annotations

import dataclasses
import json

import pandas as pd

from roadmap.complexity import count
from roadmap.dataclass_fields import to_dict
from roadmap.design import Design
from roadmap.enums import Stem
from roadmap.errors import unknown
from roadmap.layers import BlockPlan, Kind, LayerSpec, StagePlan, kind_of, plan
from roadmap.network import Network
from steps import Roadmap, get_regime

FORMATS = ("table", "markdown", "csv", "json")


def render(df: pd.DataFrame, fmt: str, missing: str | None = None) -> str:
    """`df` as an aligned text table, GitHub Markdown, CSV or a JSON list of objects; `missing`: what a table or
    Markdown cell shows for a missing value (given: JSON writes null; default: pandas' NaN)."""
    if fmt == "table":
        return df.to_string(index=False) if missing is None else df.to_string(index=False, na_rep=missing)
    if fmt == "markdown":
        if missing is None:
            return df.to_markdown(index=False)
        return df.astype(object).where(df.notna(), None).to_markdown(index=False, missingval=missing)
    if fmt == "csv":
        return df.to_csv(index=False).rstrip("\n")
    if fmt == "json":
        frame = df if missing is None else df.astype(object).where(df.notna(), None)  # null, not NaN
        return json.dumps(frame.to_dict(orient="records"), indent=2)
    raise unknown("format", fmt, FORMATS)


class RowPrinter:
    """Prints a table row by row, each row as soon as it is known and flushed (Markdown or CSV, whose rows stand
    alone): a long measurement cut short still leaves the rows it finished. A row with other columns than the one
    before starts a new table (its header printed again)."""

    STREAMS = ("markdown", "csv")

    def __init__(self, fmt: str, write=print) -> None:
        self.fmt, self.write, self.columns = fmt, write, None

    def __call__(self, row: dict) -> None:
        lines = render(pd.DataFrame([row]), self.fmt).splitlines()
        if list(row) != self.columns:
            if self.columns is not None:
                self.write("")
            self.columns = list(row)
            self.write("\n".join(lines[:-1]), flush=True)
        self.write(lines[-1], flush=True)


def _regime(regime: str | Roadmap) -> Roadmap:
    return regime if isinstance(regime, Roadmap) else get_regime(regime)


STEPS_MISSING = "—"
"""What `roadmap steps` prints in the paper columns of a step the paper never trained (`Step.in_paper` False)."""


def steps_table(regime: str = "resnet50") -> pd.DataFrame:
    """The ordered roadmap: step, section, what changes, the paper's top-1 and GFLOPs (missing for a step off the
    paper; `roadmap steps` shows `STEPS_MISSING` there)."""
    rows = []
    for i, s in enumerate(_regime(regime).steps):
        rows.append({
            "#": i,
            "step": s.name if not s.is_branch else f"  {s.name} (branch)",
            "section": str(s.section),
            "what changes": s.summary,
            "paper_top1": s.paper_top1,
            "paper_gflops": s.paper_gflops,
        })
    return pd.DataFrame(rows)


def flops_table(img_size: int = 224, num_classes: int = 1000, regime: str = "resnet50", **net_changes) -> pd.DataFrame:
    """Every step's parameters and GFLOPs (paper convention) beside the paper's GFLOPs (None where it prints none)."""
    rows = []
    r = _regime(regime)
    for s in r.steps:
        net = r.design_for(s.name).net
        if net_changes:
            net = dataclasses.replace(net, **net_changes)
        c = count(net, img_size, num_classes)
        rows.append({
            "step": s.name,
            "branch": s.is_branch,
            "params": c.params,
            "gflops": round(c.gflops, 4),  # 4 decimals, so rounding to the paper's 2 is not a double rounding
            "paper_gflops": s.paper_gflops,
            "matches_paper": None if s.paper_gflops is None else round(c.gflops, 2) == s.paper_gflops,
            "note": s.footnote,
        })
    return pd.DataFrame(rows)


def _block_layout(block: BlockPlan) -> str:
    """A block's branch as its labelled layers read, e.g. "7x7 dw 96, 1x1 384, 1x1 96"."""
    labels = ((kind_of(x).label, x) for x in block.branch)
    return ", ".join(label(x) for label, x in labels if label is not None)


def _stage_layout(stage: StagePlan) -> str:
    text = f"[{_block_layout(stage.blocks[-1])}] x{len(stage.blocks)}"
    if stage.blocks[0].stride > 1:
        text += f", stride {stage.blocks[0].stride} in the first"
    down = [x for x in stage.downsample if x.kind == Kind.CONV]
    if down:
        text = f"down {down[0].kernel}x{down[0].kernel}/{down[0].stride} {down[0].c_out}; " + text
    return text


def stage_table(spec: str | Design, img_size: int = 224, num_classes: int = 1000,
                regime: str = "resnet50") -> pd.DataFrame:
    """Per-stage rows, the way a paper's architecture table reads: layout, output shape, params, GFLOPs."""
    design = _regime(regime).design_for(spec) if isinstance(spec, str) else spec
    net = design.net
    c = count(net, img_size, num_classes)
    layers = plan(net, num_classes)
    layouts = {"stem": _stem_layout(net, layers.stem), "head": _head_layout(layers.head)}
    for i, stage in enumerate(layers.stages, start=1):
        layouts[f"stage{i}"] = _stage_layout(stage)
    rows = []
    for row in c.by_stage():
        ch, h, w = row["out_shape"]
        rows.append({
            "stage": row["stage"],
            "layout": layouts.get(row["stage"], ""),
            "output": f"{ch}x{h}x{w}" if row["stage"] != "head" else f"{ch}",
            "params": row["params"],
            "gflops": round(row["gflops"], 3),
        })
    rows.append({"stage": "total", "layout": "", "output": "", "params": c.params, "gflops": round(c.gflops, 3)})
    return pd.DataFrame(rows)


def _stem_layout(net: Network, stem: tuple[LayerSpec, ...]) -> str:
    """"7x7/2 conv 64, 3x3/2 max-pool", "3x3 conv 64", "4x4/4 conv 96 (patchify)"."""
    patchify = net.stem is Stem.PATCHIFY
    parts = []
    for x in stem:
        size = f"{x.kernel}x{x.kernel}" + (f"/{x.stride}" if x.stride > 1 or patchify else "")
        if x.kind == Kind.CONV:
            parts.append(f"{size} conv {x.c_out}" + (" (patchify)" if patchify else ""))
        elif x.kind == Kind.MAX_POOL:
            parts.append(f"{size} max-pool")
    return ", ".join(parts)


def _head_layout(head: tuple[LayerSpec, ...]) -> str:
    """"global avg-pool, norm, fc 1000"."""
    words = {Kind.GLOBAL_POOL: "global avg-pool", Kind.NORM: "norm", Kind.LINEAR: "fc"}
    return ", ".join(words[x.kind] + (f" {x.c_out}" if x.kind == Kind.LINEAR else "") for x in head if x.kind in words)


def fields_table(design: Design) -> pd.DataFrame:
    """Every field of the design's network and recipe with its value and documentation."""
    rows = []
    for part in ("net", "recipe"):
        obj = getattr(design, part)
        values = to_dict(obj)
        for f in dataclasses.fields(obj):
            doc = f.metadata.get("doc", "")
            rows.append({"field": f"{part}.{f.name}", "value": _fmt(values[f.name]), "doc": doc})
    return pd.DataFrame(rows)


def diff_table(a: str, b: str, img_size: int = 224, regime: str = "resnet50") -> tuple[pd.DataFrame, pd.DataFrame]:
    """(changed fields, complexity delta) between two step specs."""
    da, db = _regime(regime).design_for(a), _regime(regime).design_for(b)
    va, vb = _flat(da), _flat(db)
    changed = [{"field": k, a: _fmt(va[k]), b: _fmt(vb[k])} for k in va if va[k] != vb[k]]
    ca, cb = count(da.net, img_size), count(db.net, img_size)
    delta = pd.DataFrame([
        {"": "params", a: f"{ca.params:,}", b: f"{cb.params:,}", "delta": f"{cb.params - ca.params:+,}"},
        {"": f"GFLOPs@{img_size}", a: f"{ca.gflops:.3f}", b: f"{cb.gflops:.3f}",
         "delta": f"{cb.gflops - ca.gflops:+.3f}"},
    ])
    return pd.DataFrame(changed, columns=["field", a, b]), delta


def _flat(design: Design) -> dict:
    d = to_dict(design)
    return {f"{part}.{k}": v for part in ("net", "recipe") for k, v in d[part].items()}


def _fmt(value) -> str:
    if isinstance(value, list):
        return "(" + ", ".join(str(v) for v in value) + ")"
    return "null" if value is None else str(value)


def step_header(spec: str, regime: str = "resnet50") -> str:
    """A paragraph on what a spec is: its step's section, what changes, why, the paper's numbers, its path."""
    r = _regime(regime)
    path = r.parse_spec(spec)
    s = r.get_step(spec.strip().split("-")[0].split("+")[0])
    branch = f" (a branch from {s.branch_of})" if s.is_branch else ""
    lines = [
        f"{s.name}{branch} - paper section {s.section}",
        f"  what changes: {s.summary}",
        f"  why: {s.rationale}",
        "  paper: not in the paper" if not s.in_paper else f"  paper: top-1 {s.paper_top1:.2f}, "
        + ("GFLOPs not printed" if s.paper_gflops is None else f"{s.paper_gflops:.2f} GFLOPs"),
    ]
    if s.footnote:
        lines.append(f"  note: {s.footnote}")
    if r.canonical(spec) != s.name:
        lines.append(f"  composed as {r.canonical(spec)}: " + " -> ".join(p.name for p in path))
    return "\n".join(lines)
