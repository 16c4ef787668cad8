"""Every trainer of the project follows one contract: ``train_X(data, out, cfg) -> manifest entry``.

``data`` is what it learns from, ``out`` where the checkpoint goes (a file for the two metric models, a
checkpoint directory for the MusicLM pieces), ``cfg`` a dataclass holding everything else (the seed, the
device, the command line the manifest records, …); the return value is the manifest entry it wrote (the
stages: the entries of the stages it trained, by file). The behaviour of each trainer is tested beside its
model (tests/test_codec.py, test_semantic.py, test_melody.py, test_mulan.py, test_classifier.py,
test_training_stream.py); this test keeps the shapes from drifting apart again.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import re
import typing

import pytest

TRAINERS = {
    "musiclm_ref.train.codec:train_codec": "CodecTrainConfig",
    "musiclm_ref.train.semantic:train_semantic": "SemanticTrainConfig",
    "musiclm_ref.train.stages:train_stages": "StagesTrainConfig",
    "musiclm_ref.train.melody:train_melody": "MelodyTrainConfig",
    "musiclm_ref.train.mulan:train_mulan": "MulanTrainConfig",
    "metrics.classifier_training:train_classifier": "ClassifierTrainConfig",
}


def _load(ref: str):
    module, name = ref.split(":")
    return importlib.import_module(module), name


@pytest.mark.parametrize("ref", sorted(TRAINERS))
def test_every_trainer_takes_data_out_and_a_config_dataclass_and_returns_the_entry(ref):
    module, name = _load(ref)
    fn = getattr(module, name)
    params = list(inspect.signature(fn).parameters.values())
    assert len(params) == 3 and all(p.kind is p.POSITIONAL_OR_KEYWORD and p.default is p.empty for p in params), (
        f"{ref}: takes {[p.name for p in params]}; the contract is (data, out, cfg) with nothing else")
    hints = typing.get_type_hints(fn)
    cfg_type = hints[params[2].name]
    assert dataclasses.is_dataclass(cfg_type) and cfg_type.__name__ == TRAINERS[ref]
    assert all(f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
               for f in dataclasses.fields(cfg_type)), f"{cfg_type.__name__}: every setting has a default"
    assert typing.get_origin(hints["return"]) is dict or hints["return"] is dict


def test_the_contract_walks_every_trainer_the_cli_calls():
    """Each ``musiclm-eval train`` subcommand calls one of the trainers above (none is left on an old contract)."""
    import benchmarks.cli.train as cli

    source = inspect.getsource(cli)
    for ref in TRAINERS:
        module, name = ref.split(":")
        assert re.search(rf"from {re.escape(module)} import [^\n]*\b{name}\b", source), f"`musiclm-eval train` does not call {ref}"
