"""Every run option is written once: `roadmap run`'s flags, their help, choices and defaults are generated from
`RunOptions`' field metadata (runner.planning.options.option), and parsed back into `RunOptions` from it."""

from __future__ import annotations

import dataclasses

from roadmap.cli import build_parser
from roadmap.cli.common import Parser
from roadmap.cli.training import add_option_flags, option_fields, options_from, run_options
from runner.planning.options import Machine, Output, RunOptions, Selection, Training, option, positive_int


def _help(command: str) -> str:
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    return sub.choices[command].format_help()


def test_every_field_has_its_flag_with_its_help():
    text = "".join(_help("run").split())  # argparse wraps lines, also at hyphens
    fields = [f for _, f in option_fields()]
    assert len(fields) == sum(len(dataclasses.fields(g)) for g in (Selection, Training, Machine, Output)) - 1  # command
    for f in fields:
        if f.metadata["help"] is None:  # a launcher's child's flags are hidden
            assert f.metadata["flag"] not in text
            continue
        assert f.metadata["flag"] in text
        help_ = f.metadata["help"]
        assert "".join((help_ if isinstance(help_, str) else help_()).split()) in text


def test_defaults_are_the_fields():
    args = build_parser().parse_args(["run"])
    opts = run_options(args, [])
    assert dataclasses.replace(opts, output=dataclasses.replace(opts.output, command=""),
                               machine=dataclasses.replace(opts.machine, jobs=None)) == RunOptions()
    assert opts.output.command == "roadmap " and opts.machine.jobs == 1  # --jobs: the preset's choice, resolved


def test_ablate_takes_all_but_the_selection_of_steps():
    text = _help("ablate")
    assert "--dataset" in text and "--micro-batch" in text
    assert "--upto" not in text and "--order" not in text and "--steps" not in text


def test_dataset_help_comes_from_the_catalog(monkeypatch):
    from runner.data import catalog

    monkeypatch.setattr(catalog, "help_text", lambda: "only-this-one, and-that")
    assert "only-this-one,and-that(default:fashion-mnist)" in "".join(_help("run").split())


def test_a_new_field_is_a_new_flag():
    """Adding a field with `option(...)` to a group is all it takes: the flag appears in the help, with its
    choices, and its value lands in the field."""

    @dataclasses.dataclass(frozen=True)
    class MoreTraining(Training):
        warmup_epochs: int | None = option("--warmup-epochs", "epochs of linear lr warm-up (default: the recipe's)",
                                           at=75, type=positive_int, metavar="N")
        schedule: str = option("--schedule", "the lr schedule", "cosine", at=76, choices=["cosine", "step"])

    @dataclasses.dataclass(frozen=True)
    class MoreOptions(RunOptions):
        training: MoreTraining = dataclasses.field(default_factory=MoreTraining)

    p = Parser(prog="roadmap run")
    add_option_flags(p, "run", MoreOptions)
    text = p.format_help()
    assert "--warmup-epochs N" in text and "epochs of linear lr warm-up" in text
    assert "{cosine,step}" in text
    assert text.index("--epochs") < text.index("--warmup-epochs") < text.index("--same-epochs")  # `at` orders them
    opts = options_from(p.parse_args(["--warmup-epochs", "3", "--schedule", "step", "--epochs", "7"]), MoreOptions)
    assert (opts.training.warmup_epochs, opts.training.schedule, opts.training.epochs) == (3, "step", 7)
    default = options_from(p.parse_args([]), MoreOptions)
    assert (default.training.warmup_epochs, default.training.schedule) == (None, "cosine")
