"""The seed's ``networkx.DiGraph`` of one layer, for analysis code written against the seed."""

from __future__ import annotations

import networkx as nx

from graphs.build import edge_weights
from graphs.source import Source, layer_graph
from graphs.spec import GraphSpec


def to_networkx(
    source: Source,
    question_id: str | None,
    spec: GraphSpec,
) -> nx.DiGraph:
    """The seed's graph of block ``spec.block``: node ``k`` has ``label`` (the decoded token) and
    ``features`` (its hidden state, a float32 numpy row); edge ``j → i`` has ``weight``, the
    attention of token ``i`` to token ``j``. ``G.graph`` holds ``question_id``, ``layer`` (the
    block, under the seed's name) and the trace's ``label``.

    With ``GraphSpec(block=l)`` (defaults otherwise) this is the graph of the seed's double loop
    (head mean, weights ``>= threshold``, all tokens), except that node features are the
    *output* of block ``l`` (hidden state ``l + 1``), the same convention as the dataset.
    ``source`` is a store directory, a ``TraceStore`` or a ``Trace`` (then ``question_id`` may be
    None). With ``nodes="answer"`` node ``k`` is answer token ``k``; with ``head_mode="heads"``
    the weight is the head mean.
    """
    inputs, data = layer_graph(source, question_id, spec)
    tokens = inputs.tokens_decoded[len(inputs.tokens_decoded) - data.num_nodes :]
    features = data.x.numpy()
    graph = nx.DiGraph(question_id=inputs.question_id, layer=spec.block, label=inputs.label)
    graph.add_nodes_from(
        (node, {"label": token, "features": features[node]}) for node, token in enumerate(tokens)
    )
    graph.add_weighted_edges_from(
        (source_node, target_node, weight)
        for (source_node, target_node), weight in zip(
            data.edge_index.T.tolist(), edge_weights(data).tolist(), strict=True
        )
    )
    return graph
