"""What a drawing of a step shows, as data: the layer plan's layers grouped the way the paper draws blocks.

A `Picture` has one `Part` per column: the stem, each stage (its separate downsampling layers, if any, and its
first block in full, with the residual path and the projection shortcut where there is one), and the head. Every
drawn layer is a `LayerSpec` of `roadmap.layers.plan`, the list the builder turns into modules, so a drawing cannot
disagree with the model; a stage's other blocks are the same layers with stride 1 and an identity shortcut, which
the part's note says. No matplotlib and no torch here: `roadmap.draw.render` turns a picture into a figure.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from roadmap.complexity import count
from roadmap.design import Design
from roadmap.layers import BlockPlan, Kind, LayerSpec, plan
from roadmap.network import Network
from steps import get_regime, scaled

NORMS = {"batch": "BatchNorm", "layer": "LayerNorm"}
ACTS = {"relu": "ReLU", "gelu": "GELU"}


@dataclass(frozen=True)
class Item:
    """One drawn layer: its plan entry and the text the picture shows for it."""

    spec: LayerSpec
    text: str  # one or two lines, e.g. "7x7 depthwise conv\n96 -> 96"
    changed: bool = False  # set by `mark_changes`: the other picture of a diff has no such layer here

    @property
    def kind(self) -> str:
        return self.spec.kind

    @property
    def boxed(self) -> bool:
        """Convs, linear layers and pools are boxes, as in the paper; norms, activations and the rest are labels."""
        return self.kind not in (Kind.NORM, Kind.ACT, Kind.LAYER_SCALE, Kind.DROP_PATH)


@dataclass(frozen=True)
class Part:
    """One column of the picture: the stem, a stage or the head."""

    title: str
    items: tuple[Item, ...]  # in forward order (a stage: its downsampling layers, then its first block's branch)
    downsample: int = 0  # how many of `items` are a separate downsampling layer before the block
    residual: bool = False  # a block: the items after `downsample` are its branch, summed with the shortcut
    shortcut: tuple[Item, ...] = ()  # the block's projection shortcut; () = identity
    after_sum: tuple[Item, ...] = ()  # the activation after the residual sum
    note: str = ""
    changed: bool = False  # the title or note differs from the other picture's

    def drawn(self) -> tuple[Item, ...]:
        """Every drawn layer, in the module's order (branch, layer scale, drop path, shortcut, activation)."""
        return self.items + self.shortcut + self.after_sum


@dataclass(frozen=True)
class Picture:
    """A step's drawing: its title, a one-line summary and its columns."""

    title: str
    summary: str
    parts: tuple[Part, ...] = ()

    def drawn(self) -> tuple[Item, ...]:
        return tuple(item for part in self.parts for item in part.drawn())


# --------------------------------------------------------------------------------------------------
# Text of a layer


def _size(spec: LayerSpec) -> str:
    text = f"{spec.c_in} \u2192 {spec.c_out}"
    return text + (f", stride {spec.stride}" if spec.stride > 1 else "")


def conv_text(spec: LayerSpec) -> str:
    """"7x7 depthwise conv" / "3x3 conv, 32 groups" / "1x1 conv", then channels and stride."""
    k = f"{spec.kernel}\u00d7{spec.kernel}"
    if spec.groups == 1:
        kind = f"{k} conv"
    elif spec.depthwise:
        kind = f"{k} depthwise conv"
    else:
        kind = f"{k} conv, {spec.groups} groups"
    return f"{kind}\n{_size(spec)}"


def layer_text(spec: LayerSpec) -> str:
    """What the picture writes for a layer of any kind (a kind it does not know: its name and channels)."""
    if spec.kind == Kind.CONV:
        return conv_text(spec)
    if spec.kind == Kind.LINEAR:
        what = "linear (classifier)" if spec.name == "head.fc" else "1\u00d71 conv (as linear)"
        return f"{what}\n{_size(spec)}"
    if spec.kind == Kind.NORM:
        return NORMS.get(str(spec.fn), str(spec.fn))
    if spec.kind == Kind.ACT:
        return ACTS.get(str(spec.fn), str(spec.fn))
    if spec.kind == Kind.MAX_POOL:
        return f"{spec.kernel}\u00d7{spec.kernel} max-pool\nstride {spec.stride}"
    if spec.kind == Kind.GLOBAL_POOL:
        return "global average pool"
    if spec.kind == Kind.LAYER_SCALE:
        return f"layer scale ({spec.value:g})"
    if spec.kind == Kind.DROP_PATH:
        return f"drop path (p={spec.value:.2g})"
    return f"{spec.kind}\n{spec.c_in} \u2192 {spec.c_out}"


def items(specs) -> tuple[Item, ...]:
    """The drawn items of plan layers; permutes (a tensor's layout, not a layer) are left out."""
    return tuple(Item(s, layer_text(s)) for s in specs if s.kind != Kind.PERMUTE)


# --------------------------------------------------------------------------------------------------
# The picture of a step


def _block_note(blocks: tuple[BlockPlan, ...]) -> str:
    rest = len(blocks) - 1
    if not rest:
        return "1 block"
    first = blocks[0]
    same = "same layers" + (", stride 1" if first.stride > 1 else "") + (", identity shortcut" if first.shortcut
                                                                           else "")
    return f"{len(blocks)} blocks: this one, then {rest} with the {same}"


def stage_part(i: int, stage, n_stages: int) -> Part:
    """Stage `i`: separate downsampling layers, then its first block (the one that downsamples, if any)."""
    block = stage.blocks[0]
    down = items(stage.downsample)
    branch = items(block.branch) + items(x for x in (block.layer_scale, block.drop_path) if x is not None)
    where = ("downsampled by the layers above the block" if down
             else "downsampled by the block's stride 2" if block.stride > 1 else "no downsampling")
    return Part(
        title=f"stage {i + 1} of {n_stages}: {block.d_out}-d, {where}",
        items=down + branch,
        downsample=len(down),
        residual=True,
        shortcut=items(block.shortcut),
        after_sum=items([block.act] if block.act is not None else []),
        note=_block_note(stage.blocks),
    )


def design_of(spec: str | Design | Network, regime: str = "resnet50", width_mult: float = 1.0,
              depth_mult: float = 1.0) -> Design:
    """The design of a step name or spec (in `regime`), a `Design` or a `Network`, scaled by the multipliers."""
    if isinstance(spec, str):
        spec = get_regime(regime).design_for(spec)
    design = spec if isinstance(spec, Design) else Design(net=spec)
    return scaled(design, width_mult, depth_mult)


def picture(spec: str | Design | Network, regime: str = "resnet50", width_mult: float = 1.0,
            depth_mult: float = 1.0, num_classes: int = 1000, img_size: int = 224) -> Picture:
    """The picture of a step: stem, every stage's downsampling and first block, head, read from the layer plan."""
    design = design_of(spec, regime, width_mult, depth_mult)
    p = plan(design.net, num_classes)
    c = count(design.net, img_size, num_classes)
    title = spec if isinstance(spec, str) else "design"
    depths = ", ".join(str(len(s.blocks)) for s in p.stages)
    summary = (f"blocks per stage ({depths}); {c.params:,} parameters, {c.gflops:.3f} GFLOPs at {img_size} px; "
               f"trained with the {design.recipe.name!r} recipe")
    parts = (
        Part(f"stem: image \u2192 {p.stem[0].c_out}-d", items(p.stem)),
        *(stage_part(i, st, len(p.stages)) for i, st in enumerate(p.stages)),
        Part("head", items(p.head)),
    )
    return Picture(title, summary, parts)


# --------------------------------------------------------------------------------------------------
# What changed between two pictures


def _marked(mine: tuple[Item, ...], theirs: tuple[Item, ...]) -> tuple[Item, ...]:
    """`mine` with every item that `theirs` does not have at the same place marked changed (a longest common
    subsequence of the texts, as `diff` aligns lines)."""
    import difflib

    a, b = [x.text for x in mine], [x.text for x in theirs]
    kept = set()
    for block in difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_matching_blocks():
        kept.update(range(block.a, block.a + block.size))
    return tuple(replace(x, changed=i not in kept) for i, x in enumerate(mine))


def _mark_part(mine: Part, theirs: Part | None) -> Part:
    if theirs is None:
        return replace(mine, changed=True, items=tuple(replace(x, changed=True) for x in mine.items))
    return replace(
        mine,
        items=_marked(mine.items, theirs.items),
        shortcut=_marked(mine.shortcut, theirs.shortcut),
        after_sum=_marked(mine.after_sum, theirs.after_sum),
        changed=(mine.title, mine.note) != (theirs.title, theirs.note),
    )


def mark_changes(a: Picture, b: Picture) -> tuple[Picture, Picture]:
    """Both pictures with what differs from the other marked: layers, and part titles and notes (depth, width,
    where downsampling happens). Parts are compared column by column."""
    def mark(mine: Picture, theirs: Picture) -> Picture:
        others = list(theirs.parts) + [None] * max(0, len(mine.parts) - len(theirs.parts))
        return replace(mine, parts=tuple(_mark_part(x, y) for x, y in zip(mine.parts, others, strict=False)))

    return mark(a, b), mark(b, a)
