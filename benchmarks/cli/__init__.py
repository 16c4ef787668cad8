"""``musiclm-eval``: one CLI over the Python API.

Subcommands are imported lazily (``LazyGroup``) so ``musiclm-eval --help`` stays fast and a
missing optional extra only breaks the command that needs it. Each entry points at a click
command in this package (one module per command group, named after it); the library packages
import no click, and tests call the library functions behind the commands directly.

Errors: the top-level group prints every project error (``metrics.errors.EvalError``: a bad file,
flag or data set, a model that cannot load) as one ``Error: …`` line and exits 1; anything else is a
bug and keeps its traceback. ``--debug`` (or ``MUSICLM_EVAL_DEBUG=1``) shows the traceback of all.
"""

from __future__ import annotations

import importlib
import importlib.util
import os

import click

from metrics.errors import EvalError

# TensorFlow's C++ start-up lines (CUDA probing, oneDNN notices) are not for the user's terminal; set
# before any command can import TensorFlow. A user who wants them sets TF_CPP_MIN_LOG_LEVEL=0.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

COMMANDS: dict[str, tuple[str, str]] = {
    # name: ("module:attribute", one-line help shown by --help without importing the module)
    "synth": ("benchmarks.cli.data:synth", "Generate the procedural captioned music corpus."),
    "degrade": ("benchmarks.cli.data:degrade", "Apply a degradation (noise, low-pass, …) to a folder of clips."),
    "stats": ("benchmarks.cli.fad:stats", "Compute embedding statistics (mu, sigma) of a folder."),
    "fad": ("benchmarks.cli.fad:fad", "Fréchet Audio Distance between a reference and a generated set."),
    "cache": ("benchmarks.cli.fad:cache", "Inspect or clear the embedding cache."),
    "score": ("benchmarks.cli.score:score", "FAD, KLD and MCC in one pass over paired audio."),
    "train": ("benchmarks.cli.train:train", "Train the classifier, MuLan, codec, tokenizer, melody model or a stage."),
    "generate": ("benchmarks.cli.generate:generate", "Generate audio from captions with a reference MusicLM."),
    "memorization": ("benchmarks.cli.memorization:memorization", "Memorization sweep and audit."),
    "compare": ("benchmarks.cli.compare:compare", "The Table-1 harness: systems x metrics."),
    "demo": ("benchmarks.cli.demo:demo", "The whole pipeline on the embedded default (make run)."),
    "musiccaps": ("benchmarks.cli.musiccaps:musiccaps", "Prepare MusicCaps clips for evaluation."),
    "agreement": ("benchmarks.cli.agreement:agreement", "Which metric agrees with the listeners: a results store vs a study."),
    "rate": ("benchmarks.cli.rate:rate", "Blind A-vs-B listening study: create, invite, serve, analyze."),
    "dashboard": ("benchmarks.cli.dashboard:dashboard", "Open the results dashboard."),
    "protocols": ("benchmarks.cli.protocols:protocols", "List the published protocols, what they need, which weights are here."),
    "tag": ("benchmarks.cli.tag:tag", "Tag audio files with a pretrained music tagger (musicnn-mtt, musicnn-msd)."),
}


class LazyGroup(click.Group):
    def __init__(self, *args, lazy: dict[str, tuple[str, str]], **kwargs):
        super().__init__(*args, **kwargs)
        self.lazy = lazy

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(self._available()))

    def _available(self) -> dict[str, tuple[str, str]]:
        out = {}
        for name, (target, help_) in self.lazy.items():
            module = target.split(":")[0]
            if importlib.util.find_spec(module.rsplit(".", 1)[0]) is None:
                continue
            try:
                if importlib.util.find_spec(module) is None:
                    continue
            except ModuleNotFoundError:
                continue
            out[name] = (target, help_)
        return out

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in self.commands:
            return self.commands[name]
        entry = self._available().get(name)
        if entry is None:
            return None
        module, attr = entry[0].split(":")
        return getattr(importlib.import_module(module), attr)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, help_) for name, (_, help_) in sorted(self._available().items())]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


DEBUG_ENV = "MUSICLM_EVAL_DEBUG"


class MainGroup(LazyGroup):
    """The top-level group: a project error is one clean line, any other exception keeps its traceback."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except EvalError as e:
            if ctx.params.get("debug") or os.environ.get(DEBUG_ENV, "") not in ("", "0"):
                raise
            raise click.ClickException(str(e)) from e


@click.group(cls=MainGroup, lazy=COMMANDS, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="musiclm-eval")
@click.option("--debug", is_flag=True, help=f"Show the traceback of every error, project errors too (or {DEBUG_ENV}=1).")
def main(debug: bool) -> None:
    """Reference MusicLM and the evaluation suite around it (FAD, KLD, MCC, memorization, human study)."""


if __name__ == "__main__":
    main()
