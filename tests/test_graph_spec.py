"""GraphSpec: one validated, frozen description of a graph, the cache key, and the one `graph:`
section of every config."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
import yaml
from torch_geometric.data import Data

from common import UserError
from graphs import GraphSpec, HallucinationGraphDataset, new_names
from graphs.cache import cache_name, load_graph
from training.checkpoints import check_checkpoint_matches
from training.cli import main as training_main
from training.data import HallucinationGraphDataModule

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"block": 1, "blocks": [0]}, "set one of block"),
        ({"blocks": []}, "empty"),
        ({"blocks": ["x"]}, "block numbers or all"),
        ({"threshold": 0}, "threshold"),
        ({"threshold": 1.5}, "threshold"),
        ({"top_k": 0}, "top_k"),
        ({"head_mode": "sum"}, "head_mode"),
        ({"nodes": "prompt"}, "nodes"),
        ({"node_features": "diagonal"}, "node_features"),
        ({"blocks": [0, 1], "combine": "concat"}, "combine"),
        ({"self_loops": "no"}, "self_loops"),
        ({"block": 1, "hidden_block": 0}, "hidden_block"),
        ({"blocks": "all", "combine": "union", "topology": True}, "topology"),
        ({"layer": 1, "layers": [0]}, "set one of block"),  # the old names, checked alike
    ],
)
def test_every_option_is_checked_where_the_spec_is_made(options, message):
    with pytest.raises(UserError, match=message):
        GraphSpec(**options)


def test_a_spec_is_frozen_plain_and_round_trips():
    spec = GraphSpec(blocks=[3, 1], head_mode="any", top_k=4)
    assert spec.blocks == (3, 1) and hash(spec) == hash(
        GraphSpec(blocks=(3, 1), head_mode="any", top_k=4)
    )
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.threshold = 0.5  # type: ignore[misc]
    assert spec.as_dict()["blocks"] == [3, 1]
    assert GraphSpec.from_dict(yaml.safe_load(yaml.safe_dump(spec.as_dict()))) == spec
    assert GraphSpec.from_dict({"block": 2, "__path__": "a.yaml"}) == GraphSpec(block=2)
    with pytest.raises(UserError, match="unknown graph option"):
        GraphSpec.from_dict({"block": 2, "treshold": 0.1})
    assert GraphSpec(blocks=["all"]).blocks == "all" and GraphSpec(blocks=["0", "1"]).blocks == (
        0,
        1,
    )


def test_resolve_makes_a_spec_concrete_for_a_store():
    union = GraphSpec(blocks="all", combine="union", node_features="both").resolve([0, 1, 2])
    assert union.blocks == (0, 1, 2) and union.chosen_blocks == [0, 1, 2]
    assert union.hidden_block == 1
    assert union.widths(hidden_size=32, num_heads=4) == (32 + 12, None)
    diagonal = GraphSpec(blocks="all", combine="union", node_features="attention_diagonal")
    assert diagonal.resolve([0, 1]).hidden_block is None
    single = GraphSpec(block=1, combine="union", head_mode="heads").resolve([0, 1])
    assert single.combine == "stack" and single.widths(32, 4) == (32, 4)
    with pytest.raises(UserError, match=r"block 7 is not stored; choose a block in 0\.\.1"):
        GraphSpec(block=7).resolve([0, 1])
    with pytest.raises(UserError, match="names no block"):
        GraphSpec().resolve([0, 1])
    with pytest.raises(ValueError, match="resolve"):
        _ = GraphSpec(blocks="all").chosen_blocks


def test_the_resolved_spec_is_the_cache_key(synthetic_store, tmp_path):
    every = HallucinationGraphDataset(tmp_path, synthetic_store, GraphSpec(blocks="all"))
    listed = HallucinationGraphDataset(tmp_path, synthetic_store, GraphSpec(blocks=[0, 1]))
    assert every.processed_dir == listed.processed_dir  # "all" is the list it stands for
    assert every.record["graph"] == GraphSpec(blocks=[0, 1]).as_dict()
    other = HallucinationGraphDataset(tmp_path, synthetic_store, GraphSpec(blocks=[0, 1], top_k=2))
    assert other.processed_dir != every.processed_dir
    with pytest.raises(TypeError, match="GraphSpec"):
        HallucinationGraphDataset(tmp_path, synthetic_store, {"layer": 1})  # type: ignore[arg-type]


def test_the_data_module_keeps_the_spec_as_plain_hyperparameters(synthetic_store, tmp_path):
    given = GraphSpec(blocks="all", head_mode="heads")
    module = HallucinationGraphDataModule(str(synthetic_store), str(tmp_path), graph=given)
    assert module.hparams.graph == given.as_dict() and module.hparams.graph["blocks"] == "all"
    assert module.spec == given.resolve([0, 1])
    assert (module.num_node_features, module.num_edge_features) == (32, 4)
    rebuilt = HallucinationGraphDataModule(**module.hparams)  # as from a checkpoint
    assert rebuilt.spec == module.spec


def test_checkpoints_from_before_the_spec_are_still_compared(tmp_path):
    old = tmp_path / "old.ckpt"  # flat graph keys in the data section, as written before
    torch.save({"state_dict": {}, "datamodule_hyper_parameters": {"layer": 1}}, old)
    with pytest.raises(UserError, match=r"--data.graph.block 0 \(checkpoint: 1\)"):
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
        assert spec == GraphSpec(block=15)
    assert spec.block is not None or spec.blocks is not None


def test_the_old_names_still_read():
    """Configs, flags and saved specs from before the rename (issue 22) say layer for block."""
    assert GraphSpec(layer=2) == GraphSpec(block=2)
    old = {"layer": None, "layers": [1, 0], "combine": "union", "hidden_layer": 0}
    assert GraphSpec.from_dict(old) == GraphSpec(blocks=[1, 0], combine="union", hidden_block=0)
    # An old config file's key wins over the new name's default; a flag of either name sets the
    # new one and unsets the old (common.dialect), so a flag wins over an old config file's key.
    assert GraphSpec(block=15, layer=None, layers="all") == GraphSpec(blocks="all")
    assert new_names({"layer": 3, "block": 15, "top_k": 2}) == {"block": 3, "top_k": 2}
    assert new_names({"layer": "unset", "block": 15}) == {"block": 15}


# Graph cache names on main before the rename (identity reduced to the spec): a cache built
# before issue 22 keeps its folder.
CACHE_NAMES_BEFORE = [
    ({"block": 15}, "layer15-all-eadf4d8d520e"),
    (
        {"blocks": "all", "combine": "union", "head_mode": "any"},
        "union0-1-2-3-etc-all-ed58cfd88650",
    ),
    ({"blocks": [0, 5, 10]}, "layers0-5-10-all-7e7f7c38830f"),
]


@pytest.mark.parametrize(("options", "name"), CACHE_NAMES_BEFORE)
def test_the_rename_keeps_every_cache_name(options, name):
    spec = GraphSpec(**options).resolve(range(30))
    identity = {"graph": spec.cache_key()}
    assert (
        cache_name(identity, spec.chosen_blocks, spec.multi_block, spec.combine, spec.nodes) == name
    )


def test_checkpoints_from_before_the_rename_are_still_compared(tmp_path):
    old = tmp_path / "old.ckpt"  # the spec's keys as saved before issue 22
    saved = {**GraphSpec(block=1).cache_key(), "head_mode": "heads"}
    torch.save({"state_dict": {}, "datamodule_hyper_parameters": {"graph": saved}}, old)
    now = GraphSpec(block=1, head_mode="heads").as_dict()
    check_checkpoint_matches(str(old), {}, {"graph": now})
    with pytest.raises(UserError, match=r"--data.graph.block 0 \(checkpoint: 1\)"):
        check_checkpoint_matches(str(old), {}, {"graph": {**now, "block": 0}})


def test_a_graph_cached_before_the_rename_reads_its_blocks(tmp_path):
    for saved, read in (({"layer": 3}, {"block": 3}), ({"layers": [1, 0]}, {"blocks": [1, 0]})):
        path = tmp_path / "000000.pt"
        torch.save({**saved, "x": torch.zeros(2, 1)}, path)
        data = Data.from_dict(load_graph(str(path)))
        assert {key: data[key] for key in read} == read and "layer" not in data
