"""The paper's stability argument, measured: how much one optimiser step moves each layer's output.

DeepNet / Magneto bound the model update ||dF|| after one step so that it stays O(lr) however
deep the network is. Here: 48-layer, d = 32 causal LMs on a real tiny-shakespeare batch; one
Adam step at lr 1e-4; u_l = ||h_l(after) - h_l(before)|| / ||h_l(before)|| for the residual
stream h_l after block l. Post-LN's u_l grows with depth until the representation is scrambled;
Magneto's and DeepNorm's stay small at every layer.

Thresholds come from measured runs (seeds 0-4): max_l u_l was 0.62-1.20 for Post-LN,
0.074-0.099 for Magneto, 0.022-0.023 for DeepNorm; u_48 / u_12 was 4.0-11.2 for Post-LN and
1.9-2.6 for Magneto. The test uses seeds 0-2 and their mean.
"""

import statistics

import pytest
import torch
import torch.nn.functional as F

from vlcore.data.text import random_blocks, shakespeare_char_corpus
from magneto.models import MagnetoGPT

from magneto.testing import one_torch_thread  # noqa: F401  (autouse)

pytestmark = pytest.mark.unit

DEPTH, LR, SEEDS = 48, 1e-4, (0, 1, 2)


@pytest.fixture(scope="module")
def batch():
    corpus = shakespeare_char_corpus()
    return corpus.vocab_size, random_blocks(corpus.train, block_size=32, batch_size=8,
                                            generator=torch.Generator().manual_seed(0))


def layer_updates(norm: str, seed: int, batch) -> list[float]:
    vocab, (x, y) = batch
    torch.manual_seed(seed)
    model = MagnetoGPT(vocab_size=vocab, max_seq_len=32, depth=DEPTH, dim=32, num_heads=4, norm=norm)
    with torch.no_grad():
        _, before = model.forward_intermediates(x)
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    F.cross_entropy(model(x).flatten(0, 1), y.flatten()).backward()
    opt.step()
    with torch.no_grad():
        _, after = model.forward_intermediates(x)
    return [((b - a).norm() / a.norm()).item() for a, b in zip(before, after)]


def test_update_norm_bounded_for_magneto_and_deepnorm_grows_for_post_ln(batch):
    u = {norm: [layer_updates(norm, s, batch) for s in SEEDS] for norm in ("post", "subln", "deepnorm")}
    peak = {k: statistics.fmean(max(r) for r in runs) for k, runs in u.items()}
    growth = {k: statistics.fmean(r[-1] / r[11] for r in runs) for k, runs in u.items()}
    # bounded: no layer of Magneto / DeepNorm moves by more than 15 % of its norm
    assert max(max(r) for r in u["subln"]) < 0.15
    assert max(max(r) for r in u["deepnorm"]) < 0.05
    # Post-LN: the update grows with depth to a large fraction of the representation
    assert peak["post"] > 0.5
    assert growth["post"] > 4.0 and growth["subln"] < 3.0
    for s in range(len(SEEDS)):
        assert u["post"][s][-1] > 4 * u["subln"][s][-1]
        assert u["post"][s][-1] > 10 * u["deepnorm"][s][-1]
    # and the first layers move comparably little in every layout: the difference is depth
    assert all(r[0] < 0.02 for runs in u.values() for r in runs)
