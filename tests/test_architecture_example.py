"""docs/ARCHITECTURE.md's worked example compiles as written, and its edge rule does what the
text says on real graphs (`_edge_rules`'s variables, not a sketch)."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from common import UserError
from graphs.build import _edge_rules, _lay_out, _select_nodes
from graphs.spec import GraphSpec
from tests.helpers import random_attention

SPEC = GraphSpec(threshold=1e-6, node_features="attention_diagonal")
SNIPPETS = re.findall(
    r"```python\n(.*?)```",
    (Path(__file__).resolve().parent.parent / "docs/ARCHITECTURE.md").read_text(encoding="utf-8"),
    re.S,
)


def snippet(text: str) -> str:
    return textwrap.dedent(text)


def test_the_field_and_its_check_compile_and_refuse_a_negative_value():
    field, check = snippet(SNIPPETS[0]), snippet(SNIPPETS[1])
    namespace: dict = {}
    exec(compile(f"class Spec:\n    {field}", "field", "exec"), namespace)
    assert namespace["Spec"].min_position == 0
    body = textwrap.indent(check, "    ")
    exec(
        compile(f"def post_init(self):\n{body}", "check", "exec"),
        {"UserError": UserError},
        namespace,
    )
    with pytest.raises(UserError, match="min_position must be >= 0"):
        namespace["post_init"](SimpleNamespace(min_position=-1))


def test_the_edge_rule_drops_the_edges_from_the_first_tokens():
    attentions = [random_attention(2, 7, seed=1), random_attention(2, 5, seed=2)]
    nodes = _select_nodes(attentions, [None, None], [3, 2], SPEC)
    rows = _lay_out(nodes, [3, 2])
    squares = [a.reshape(a.shape[0], -1) for a in nodes.attentions]
    _, flat, target = _edge_rules(nodes, squares, rows, SPEC)
    scope = {"spec": SimpleNamespace(min_position=2), "rows": rows, "flat": flat, "target": target}
    exec(compile(snippet(SNIPPETS[2]), "rule", "exec"), {}, scope)
    kept_tokens = rows.token.take(rows.source_node(scope["flat"], scope["target"]))
    assert kept_tokens.min() == 2 and len(scope["flat"]) < len(flat)
    assert np.all(np.diff(scope["flat"]) > 0)  # still row-major
