"""Proposition 1's assumption, measured: are the heads' overfitting terms uncorrelated?

The paper derives its weights (Eq. 6) from the infinitesimal OGR² of a blended step
ĝ = Σ_k w_k v_k (Eq. 5) under the assumption that the cross terms
C_jk = E[⟨∇L^T − ∇L*, v_j⟩⟨∇L^T − ∇L*, v_k⟩] vanish for j ≠ k, and says (claim 18) that in
informal experiments they are small beside the diagonal terms σ_k² = C_kk.

:func:`measure` estimates C at one checkpoint of a multi-head model. Its definitions:

* L is the fused head's loss, the prediction the model is trained for; ∇L^T is its gradient
  on T' (the fixed train subset every loss in the history is read on) and ∇L* ≈ ∇L^V its
  gradient on heldout V, both in eval mode (as every loss in the history is measured);
* v_k is the gradient of head k's own loss on one mini-batch of train, the stochastic
  estimate an SGD step on that head takes (zero on parameters the head does not reach: a
  modality head reaches its encoder and its own linear layer);
* the expectation is over ``batches`` mini-batches of the run's batch size drawn from
  ``seed``: o_k = ⟨∇L^T − ∇L^V, v_k⟩ per batch, C = mean(o oᵀ) (uncentered, as in Eq. 5) and
  g_k = mean ⟨∇L^V, v_k⟩ (the first-order generalization gain of a step along v_k).

:class:`CrossTerms` gives the cross terms relative to the diagonal ones (C_jk / √(C_jj C_kk),
in [−1, 1]), the fluctuations' correlation (centered), Eq. 6's weights beside the minimiser
of the OGR² ratio wᵀCw / (gᵀw)² without the assumption (w ∝ C⁻¹g), and the efficiency of
Eq. 6's weights: the minimal OGR² over their OGR² (1: ignoring the cross terms costs
nothing).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from gblend.models import JOINT


@dataclass(frozen=True)
class CrossTerms:
    """The second moments of the heads' overfitting at one checkpoint (see the module)."""

    epoch: int
    heads: tuple[str, ...]
    moments: np.ndarray  # C, heads x heads, uncentered
    centered: np.ndarray  # the covariance of o over the batches
    gains: np.ndarray  # g, one per head
    batches: int

    def __post_init__(self) -> None:
        k = len(self.heads)
        if (
            self.moments.shape != (k, k)
            or self.centered.shape != (k, k)
            or self.gains.shape != (k,)
        ):
            raise ValueError(f"moments, centered and gains must match {k} heads")

    @staticmethod
    def _relative(matrix: np.ndarray) -> np.ndarray:
        scale = np.sqrt(np.outer(np.diag(matrix), np.diag(matrix)))
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(scale > 0, matrix / scale, np.nan)

    def relative(self) -> np.ndarray:
        """C_jk / √(C_jj C_kk): each cross term beside its diagonal terms (1 on the diagonal)."""
        return self._relative(self.moments)

    def correlation(self) -> np.ndarray:
        """The correlation of the heads' overfitting over the mini-batches (centered)."""
        return self._relative(self.centered)

    def pairs(self) -> list[tuple[str, str, float, float]]:
        """(head j, head k, relative cross term, centered correlation) for each pair j < k."""
        rel, cor = self.relative(), self.correlation()
        return [
            (self.heads[j], self.heads[k], float(rel[j, k]), float(cor[j, k]))
            for j, k in itertools.combinations(range(len(self.heads)), 2)
        ]

    def ogr2(self, w: np.ndarray) -> float:
        """The infinitesimal OGR² of the blend ``w`` (Eq. 5 with these moments)."""
        gain = float(self.gains @ w)
        return float(w @ self.moments @ w) / gain**2 if gain else float("inf")

    def paper_weights(self) -> np.ndarray:
        """Eq. 6: w_k ∝ g_k / σ_k², normalised to Σ|w| = 1 (a gain can be negative)."""
        return _normalised(self.gains / np.diag(self.moments))

    def optimal_weights(self) -> np.ndarray:
        """The minimiser of wᵀCw / (gᵀw)² without the assumption, w ∝ C⁻¹g (a pseudo-inverse
        where C is singular), normalised to Σ|w| = 1."""
        return _normalised(np.linalg.pinv(self.moments) @ self.gains)

    def efficiency(self) -> float:
        """min OGR² / OGR² of Eq. 6's weights, in (0, 1]."""
        paper = self.ogr2(self.paper_weights())
        return self.ogr2(self.optimal_weights()) / paper if paper else float("nan")

    def to_json(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "heads": list(self.heads),
            "moments": self.moments.tolist(),
            "centered": self.centered.tolist(),
            "gains": self.gains.tolist(),
            "batches": self.batches,
        }

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> CrossTerms:
        return cls(
            epoch=int(obj["epoch"]),
            heads=tuple(obj["heads"]),
            moments=np.asarray(obj["moments"], dtype=float),
            centered=np.asarray(obj["centered"], dtype=float),
            gains=np.asarray(obj["gains"], dtype=float),
            batches=int(obj["batches"]),
        )


def _normalised(w: np.ndarray) -> np.ndarray:
    total = np.abs(w).sum()
    return w / total if total > 0 else w


def _flat(grads: Sequence[torch.Tensor | None], params: Sequence[nn.Parameter]) -> torch.Tensor:
    return torch.cat(
        [
            (g if g is not None else torch.zeros_like(p)).reshape(-1)
            for g, p in zip(grads, params, strict=True)
        ]
    )


def _fused_gradient(model, x, y, index, params, chunk: int) -> torch.Tensor:
    """∇ of the fused head's mean loss over ``index``, accumulated chunk by chunk."""
    total = torch.zeros(sum(p.numel() for p in params), device=y.device)
    for start in range(0, len(index), chunk):
        rows = index[start : start + chunk]
        logits = model({m: t[rows] for m, t in x.items()})[JOINT]
        loss = F.cross_entropy(logits, y[rows], reduction="sum") / len(index)
        total += _flat(torch.autograd.grad(loss, params, allow_unused=True), params)
    return total


def measure(
    model: nn.Module,
    x: Mapping[str, torch.Tensor],
    y: torch.Tensor,
    train: torch.Tensor,
    train_subset: torch.Tensor,
    heldout: torch.Tensor,
    epoch: int,
    batch_size: int,
    batches: int = 32,
    seed: int = 0,
    chunk: int = 1024,
) -> CrossTerms:
    """The cross terms of the heads of ``model`` (a multi-head model: its heads include
    :data:`~gblend.models.JOINT`) at its current weights; the indices are into ``x`` and
    ``y``. The model's weights and mode are left as they were."""
    if batches < 2:
        raise ValueError(f"batches must be at least 2 (a centered moment needs two), got {batches}")
    was_training = model.training
    model.eval()
    params = [p for p in model.parameters() if p.requires_grad]
    try:
        probe = model({m: t[train[:1]] for m, t in x.items()})
        heads = tuple(probe)
        if JOINT not in heads or len(heads) < 2:
            raise ValueError(f"measure needs a multi-head model with a fused head; got {heads}")
        gap = _fused_gradient(model, x, y, train_subset, params, chunk)
        gap -= (true := _fused_gradient(model, x, y, heldout, params, chunk))
        rng = torch.Generator().manual_seed(seed)
        over, gain = np.zeros((batches, len(heads))), np.zeros((batches, len(heads)))
        for b in range(batches):
            rows = train[torch.randperm(len(train), generator=rng)[:batch_size].to(train.device)]
            logits = model({m: t[rows] for m, t in x.items()})
            for k, head in enumerate(heads):
                loss = F.cross_entropy(logits[head], y[rows])
                v = _flat(torch.autograd.grad(loss, params, allow_unused=True, retain_graph=True),
                          params)  # fmt: skip
                over[b, k], gain[b, k] = float(gap @ v), float(true @ v)
    finally:
        model.train(was_training)
    return CrossTerms(
        epoch=epoch,
        heads=heads,
        moments=over.T @ over / batches,
        centered=np.cov(over, rowvar=False),
        gains=gain.mean(axis=0),
        batches=batches,
    )
