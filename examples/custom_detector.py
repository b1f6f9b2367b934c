"""Your own PyG detector, trained and scored on the all-layer attention graphs of a trace store.

python examples/custom_detector.py --traces traces_data/smollm2_135M_demo --root graphs_data/x
"""

from common import set_thread_policy

set_thread_policy()  # before torch loads (common/threads.py)

import argparse
import copy

import torch
import torch.nn.functional as F
from sklearn.metrics import roc_auc_score
from torch import nn
from torch_geometric.loader import DataLoader
from torch_geometric.nn import GINEConv, global_mean_pool

from graphs import SPLITS, GraphSpec, HallucinationGraphDataset

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--traces", default="traces_data/smollm2_135M_demo")
parser.add_argument("--root", default="graphs_data/smollm2_135M_demo")
parser.add_argument("--epochs", type=int, default=30)
parser.add_argument("--split-ratios", type=float, nargs=3, default=[0.7, 0.15, 0.15])
args = parser.parse_args()

# One token graph per answer: j -> i when any (layer, head) has attn[i, j] >= 0.01, every
# (layer, head) value in edge_attr [E, L*H] (fp16), each token's L*H self-attention values as x.
spec = GraphSpec(blocks="all", combine="union", head_mode="any", prompt_edges=False,
                 node_features="attention_diagonal")  # fmt: skip
train, val, test = (
    HallucinationGraphDataset(args.root, args.traces, spec, split=s, split_ratios=args.split_ratios)
    for s in SPLITS
)


class Detector(nn.Module):  # GINE over attention edges, mean over answer tokens, one logit
    def __init__(self, node_features: int, edge_features: int, width: int = 64) -> None:
        super().__init__()
        self.embed = nn.Sequential(nn.LayerNorm(node_features), nn.Linear(node_features, width))
        self.convs = nn.ModuleList(
            GINEConv(nn.Sequential(nn.Linear(width, width), nn.ReLU()), edge_dim=edge_features)
            for _ in range(2)
        )
        self.out = nn.Linear(width, 1)

    def forward(self, batch) -> torch.Tensor:
        h = self.embed(batch.x)
        for conv in self.convs:
            h = h + conv(h, batch.edge_index, batch.edge_attr.float())
        answer = batch.is_answer
        return self.out(global_mean_pool(h[answer], batch.batch[answer], batch.num_graphs))[:, 0]


@torch.no_grad()
def auroc(model: nn.Module, dataset) -> float:
    batches = list(DataLoader(dataset, batch_size=64))
    return roc_auc_score(torch.cat([b.y for b in batches]), torch.cat(list(map(model, batches))))


torch.manual_seed(0)
model = Detector(train.num_node_features, train.num_edge_features)
optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4)
best = (-1.0, None)
for _ in range(args.epochs):
    for batch in DataLoader(train, batch_size=32, shuffle=True):
        optimizer.zero_grad()
        F.binary_cross_entropy_with_logits(model(batch), batch.y.float()).backward()
        optimizer.step()
    best = max(best, (auroc(model, val), copy.deepcopy(model.state_dict())), key=lambda b: b[0])
model.load_state_dict(best[1])
print(f"{len(train)}/{len(val)}/{len(test)} train/val/test graphs; "
      f"best val AUROC {best[0]:.3f}; test AUROC {auroc(model, test):.3f}")  # fmt: skip
