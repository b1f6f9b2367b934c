"""GraphSpec: one validated, frozen description of a graph, the cache key, and the one `graph:`
section of every config."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
import yaml

from common import UserError
from graphs import GraphSpec, HallucinationGraphDataset
from training.checkpoints import check_checkpoint_matches
from training.cli import main as training_main
from training.data import HallucinationGraphDataModule

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"layer": 1, "layers": [0]}, "set one of layer"),
        ({"layers": []}, "empty"),
        ({"layers": ["x"]}, "block numbers or all"),
        ({"threshold": 0}, "threshold"),
        ({"threshold": 1.5}, "threshold"),
        ({"top_k": 0}, "top_k"),
        ({"head_mode": "sum"}, "head_mode"),
        ({"nodes": "prompt"}, "nodes"),
        ({"node_features": "diagonal"}, "node_features"),
        ({"layers": [0, 1], "combine": "concat"}, "combine"),
        ({"self_loops": "no"}, "self_loops"),
        ({"layer": 1, "hidden_layer": 0}, "hidden_layer"),
        ({"layers": "all", "combine": "union", "topology": True}, "topology"),
    ],
)
def test_every_option_is_checked_where_the_spec_is_made(options, message):
    with pytest.raises(UserError, match=message):
        GraphSpec(**options)


def test_a_spec_is_frozen_plain_and_round_trips():
    spec = GraphSpec(layers=[3, 1], head_mode="any", top_k=4)
    assert spec.layers == (3, 1) and hash(spec) == hash(
        GraphSpec(layers=(3, 1), head_mode="any", top_k=4)
    )
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.threshold = 0.5  # type: ignore[misc]
    assert spec.as_dict()["layers"] == [3, 1]
    assert GraphSpec.from_dict(yaml.safe_load(yaml.safe_dump(spec.as_dict()))) == spec
    assert GraphSpec.from_dict({"layer": 2, "__path__": "a.yaml"}) == GraphSpec(layer=2)
    with pytest.raises(UserError, match="unknown graph option"):
        GraphSpec.from_dict({"layer": 2, "treshold": 0.1})
    assert GraphSpec(layers=["all"]).layers == "all" and GraphSpec(layers=["0", "1"]).layers == (
        0,
        1,
    )


def test_resolve_makes_a_spec_concrete_for_a_store():
    union = GraphSpec(layers="all", combine="union", node_features="both").resolve([0, 1, 2])
    assert union.layers == (0, 1, 2) and union.blocks == [0, 1, 2] and union.hidden_layer == 1
    assert union.widths(hidden_size=32, num_heads=4) == (32 + 12, None)
    diagonal = GraphSpec(layers="all", combine="union", node_features="attention_diagonal")
    assert diagonal.resolve([0, 1]).hidden_layer is None
    single = GraphSpec(layer=1, combine="union", head_mode="heads").resolve([0, 1])
    assert single.combine == "stack" and single.widths(32, 4) == (32, 4)
    with pytest.raises(UserError, match=r"layer 7 is not stored; choose a block in 0\.\.1"):
        GraphSpec(layer=7).resolve([0, 1])
    with pytest.raises(UserError, match="names no block"):
        GraphSpec().resolve([0, 1])
    with pytest.raises(ValueError, match="resolve"):
        _ = GraphSpec(layers="all").blocks


def test_the_resolved_spec_is_the_cache_key(synthetic_store, tmp_path):
    every = HallucinationGraphDataset(tmp_path, synthetic_store, GraphSpec(layers="all"))
    listed = HallucinationGraphDataset(tmp_path, synthetic_store, GraphSpec(layers=[0, 1]))
    assert every.processed_dir == listed.processed_dir  # "all" is the list it stands for
    assert every.record["graph"] == GraphSpec(layers=[0, 1]).as_dict()
    other = HallucinationGraphDataset(tmp_path, synthetic_store, GraphSpec(layers=[0, 1], top_k=2))
    assert other.processed_dir != every.processed_dir
    with pytest.raises(TypeError, match="GraphSpec"):
        HallucinationGraphDataset(tmp_path, synthetic_store, {"layer": 1})  # type: ignore[arg-type]


def test_the_data_module_keeps_the_spec_as_plain_hyperparameters(synthetic_store, tmp_path):
    given = GraphSpec(layers="all", head_mode="heads")
    module = HallucinationGraphDataModule(str(synthetic_store), str(tmp_path), graph=given)
    assert module.hparams.graph == given.as_dict() and module.hparams.graph["layers"] == "all"
    assert module.spec == given.resolve([0, 1])
    assert (module.num_node_features, module.num_edge_features) == (32, 4)
    rebuilt = HallucinationGraphDataModule(**module.hparams)  # as from a checkpoint
    assert rebuilt.spec == module.spec


def test_checkpoints_from_before_the_spec_are_still_compared(tmp_path):
    old = tmp_path / "old.ckpt"  # flat graph keys in the data section, as written before
    torch.save({"state_dict": {}, "datamodule_hyper_parameters": {"layer": 1}}, old)
    with pytest.raises(UserError, match=r"--data.graph.layer 0 \(checkpoint: 1\)"):
        check_checkpoint_matches(str(old), {}, {"graph": {"layer": 0}})
    check_checkpoint_matches(str(old), {}, {"graph": {"layer": 1}})


@pytest.mark.parametrize("name", sorted(p.name for p in (REPO / "configs/training").glob("*.yaml")))
def test_training_configs_name_their_graphs_once(name, capsys, monkeypatch):
    config = yaml.safe_load((REPO / "configs/training" / name).read_text(encoding="utf-8"))
    fields = {field.name for field in dataclasses.fields(GraphSpec)}
    assert not fields & set(config["data"]), "graph options belong in data.graph only"
    monkeypatch.chdir(REPO)
    assert training_main(["fit", "--config", f"configs/training/{name}", "--print_config"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    spec = GraphSpec.from_dict(printed["data"]["graph"])
    if config["data"]["graph"] == "../graphs/layer15.yaml":
        assert spec == GraphSpec(layer=15)
    assert spec.layer is not None or spec.layers is not None
