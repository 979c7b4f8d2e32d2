"""Claim 18: Proposition 1's cross terms, measured. Each test fails when the measurement stops
being what gblend.cross_terms says it is."""

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import two_modality_toy
from torch.nn import functional as F

from gblend import cross_terms, loop
from gblend import experiments as ex
from gblend.cross_terms import CrossTerms
from gblend.experiments import correlation
from gblend.experiments import methods as gmethods
from gblend.models import JOINT, FusionNet, ModelConfig
from gblend.train import Trainer


@pytest.fixture()
def toy():
    yield from two_modality_toy("toy_cross_terms")


def unit_of(dataset_name, **params):
    grid = ex.Grid.resolve("smoke", dataset_name, methods=("cross_terms",), combos="study")
    (unit,) = list(grid)
    return replace(unit, params=gmethods.get("cross_terms").make_params(params))


def by_backward(model, x, y, index, head):
    """The gradient of ``head``'s mean loss on ``index`` by .backward(), flattened over every
    parameter (zeros where the head does not reach): the reference the measurement must give."""
    model.zero_grad(set_to_none=True)
    F.cross_entropy(model({m: t[index] for m, t in x.items()})[head], y[index]).backward()
    return torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1)
                      for p in model.parameters()])  # fmt: skip


def test_the_moments_are_the_overfitting_of_each_heads_minibatch_gradient(toy):
    torch.manual_seed(0)
    model = FusionNet(toy.specs, toy.n_classes, ModelConfig(modality_heads=True)).eval()
    unit = unit_of("toy_cross_terms")
    train, evals = loop.split_indices(toy.splits, unit.train)
    terms = cross_terms.measure(model, toy.x, toy.y, train, evals[loop.TRAIN_SUBSET],
                                evals["heldout"], 3, batch_size=16, batches=5, seed=7)  # fmt: skip
    assert terms.heads == ("left", "right", JOINT) and terms.epoch == 3
    gap = by_backward(model, toy.x, toy.y, evals[loop.TRAIN_SUBSET], JOINT)
    true = by_backward(model, toy.x, toy.y, evals["heldout"], JOINT)
    gap -= true
    rng = torch.Generator().manual_seed(7)
    over, gain = [], []
    for _ in range(5):
        rows = train[torch.randperm(len(train), generator=rng)[:16]]
        v = [by_backward(model, toy.x, toy.y, rows, h) for h in terms.heads]
        over.append([float(gap @ g) for g in v])
        gain.append([float(true @ g) for g in v])
    over = np.array(over)
    np.testing.assert_allclose(terms.moments, over.T @ over / 5, rtol=1e-4, atol=1e-10)
    np.testing.assert_allclose(terms.centered, np.cov(over, rowvar=False), rtol=1e-4, atol=1e-10)
    np.testing.assert_allclose(terms.gains, np.mean(gain, axis=0), rtol=1e-4, atol=1e-10)
    # a modality head's step reaches its own encoder only: its overfitting is not the fused one's
    assert not np.allclose(terms.moments[0], terms.moments[2])
    assert np.diag(terms.relative()) == pytest.approx(1.0)


def test_without_cross_terms_eq_6_is_the_optimal_blend_and_with_them_it_is_not():
    gains = np.array([1.0, 2.0, 0.5])
    diagonal = CrossTerms(0, ("a", "b", JOINT), np.diag([1.0, 4.0, 0.25]), np.eye(3), gains, 8)
    # Eq. 6: w_k ∝ g_k / σ_k²
    assert diagonal.paper_weights() == pytest.approx(np.array([1.0, 0.5, 2.0]) / 3.5)
    assert diagonal.optimal_weights() == pytest.approx(diagonal.paper_weights())
    assert diagonal.efficiency() == pytest.approx(1.0)
    moments = np.array([[1.0, 1.6, 0.0], [1.6, 4.0, 0.0], [0.0, 0.0, 0.25]])
    correlated = replace(diagonal, moments=moments)
    assert correlated.relative()[0, 1] == pytest.approx(0.8)
    assert 0 < correlated.efficiency() < 0.99
    best = correlated.ogr2(correlated.optimal_weights())
    rng = np.random.default_rng(0)
    for _ in range(200):  # no blend has a lower OGR² than w ∝ C⁻¹g
        assert correlated.ogr2(correlated.optimal_weights() + 0.1 * rng.normal(size=3)) >= best
    assert CrossTerms.from_json(correlated.to_json()).efficiency() == correlated.efficiency()


def test_measuring_does_not_change_the_equal_weight_run_and_happens_at_the_checkpoints(toy):
    unit = unit_of("toy_cross_terms", checkpoints=2, batches=4)
    trainer, extras = gmethods.get("cross_terms").train(unit, toy)
    assert [t["epoch"] for t in extras["cross_terms"]] == [1, 2]  # smoke trains 2 epochs
    assert gmethods.CrossTermParams().epochs(30) == [8, 15, 22, 30]
    torch.manual_seed(unit.seed)
    model = FusionNet(toy.specs, toy.n_classes, unit.model)
    uniform = Trainer(unit.train).fit(model, toy.x, toy.y, toy.splits,
                                      dict.fromkeys(model.heads, 1 / len(model.heads)))  # fmt: skip
    pd.testing.assert_frame_equal(trainer.history_, uniform.history_)
    with pytest.raises(ValueError, match="at least 2 batches"):
        gmethods.get("cross_terms").make_params({"batches": 1})


def frames(modalities: dict[int, float], with_fused: dict[int, float]):
    """A cross-term frame and a blends frame of one data set with three heads: the pair of
    modality heads and one modality head with the fused head, one value per seed each."""
    ident = {"dataset": "d", "combo": "a+b", "method": "cross_terms", "variant": ""}
    terms = pd.DataFrame([ident | {"seed": s, "epoch": 2, "head_j": "a", "head_k": k,
                                   "relative": r, "correlation": 0.0}
                          for k, values in (("b", modalities), (JOINT, with_fused))
                          for s, r in values.items()])  # fmt: skip
    blends = pd.DataFrame([ident | {"seed": s, "epoch": 2, "head": h, "paper_weight": 0.5,
                                    "optimal_weight": 0.5, "efficiency": 0.95}
                           for s in modalities for h in ("a", "b", JOINT)])  # fmt: skip
    return terms, blends


SMALL = {0: 0.05, 1: -0.1, 2: 0.08, 3: -0.02, 4: 0.1}  # either sign: the size counts
LARGE = {0: 0.9, 1: -0.8, 2: 0.85, 3: -0.95, 4: 0.9}
UNCLEAR = {0: 0.05, 1: 0.9, 2: 0.1, 3: 0.6, 4: 0.2}


@pytest.mark.parametrize(
    "modalities, with_fused, verdict",
    [
        (SMALL, SMALL, "reproduced"),
        (SMALL, LARGE, "partly"),
        (LARGE, SMALL, "partly"),
        (LARGE, LARGE, "contradicted"),
        (LARGE, UNCLEAR, "contradicted"),
        (UNCLEAR, UNCLEAR, "not detectable"),
    ],
)
def test_claim_18_needs_small_cross_terms_between_modality_heads_and_with_the_fused_head(
    modalities, with_fused, verdict
):
    row = correlation.claims(*frames(modalities, with_fused)).iloc[0]
    assert row.verdict.startswith(verdict)
    assert "two modality heads" in row.evidence and "efficiency" in row.evidence
