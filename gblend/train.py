"""A trainer that knows nothing about the model, the data set or G-Blend.

:class:`Trainer` is the reference definition of a training run; what a run is (checks,
T', mini-batch order, objective, learning-rate schedule, history, best epoch, patience, the
non-finite loss check and the epoch loop) lives in :mod:`gblend.loop` and is shared with
:class:`gblend.batched.BatchedTrainer`, which gives the same runs up to floating-point
rounding. Here only the execution is defined: one model, one PyTorch optimizer.

The model maps a dict of modality tensors to a dict of per-head logits; the trainer minimises
a weighted sum of the heads' cross-entropy losses (naive training is the fused head alone with
weight 1; G-Blend passes its weights) and records, every epoch, the loss and accuracy of every
head on a fixed train subset T', on heldout V, on val and on test, in eval mode.

Data sets here fit in memory, so the tensors are moved to the device once and mini-batches are
indexed on the device: a per-batch ``DataLoader`` would cost more than the small models do.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.nn import functional as F

from gblend import loop
from gblend.loop import EVAL_SPLITS, OPTIMIZERS, REQUIRED_SPLITS, TRAIN_SUBSET

__all__ = [
    "EVAL_SPLITS",
    "OPTIMIZERS",
    "REQUIRED_SPLITS",
    "TRAIN_SUBSET",
    "TrainConfig",
    "Trainer",
    "class_accuracy",
    "evaluate",
    "evaluate_per_class",
    "evaluate_per_sample",
    "make_optimizer",
    "resolve_device",
]


@dataclass
class TrainConfig:
    """Optimisation settings; one instance describes one training run."""

    epochs: int = 30
    batch_size: int = 64
    optimizer: str = "sgd"  # one of OPTIMIZERS
    lr: float = 0.01
    momentum: float = 0.9  # SGD only
    weight_decay: float = 1e-4
    lr_milestones: tuple[int, ...] = ()  # epochs after which lr is multiplied by lr_gamma
    lr_gamma: float = 0.1
    # An epoch is this many shuffled passes over train: a train split thinned to 1/k runs k
    # passes, so every size gets the same SGD steps, schedule and evaluations (not 1/k of them)
    passes_per_epoch: int = 1
    patience: int | None = None  # stop after this many epochs without a better val accuracy
    select_head: str = "joint"  # the head whose val accuracy selects the best epoch
    restore_best: bool = True  # end with the weights of the best val epoch
    train_subset_size: int = 1000  # size of T'
    # Evaluation chunks: on a CPU core 512 samples evaluate 2-3x faster than 4096 (convolutions
    # whose activations stay in cache); results agree to rounding, so not part of a cache key.
    eval_batch_size: int = 512
    seed: int = 0
    device: str = "auto"
    progress: bool = False


def resolve_device(device: str) -> torch.device:
    """``"auto"`` means CUDA when available, else CPU; anything else is passed to torch."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def make_optimizer(params, config: TrainConfig) -> torch.optim.Optimizer:
    """SGD with momentum, Adam or AdaGrad, as compared in the paper's Table 3."""
    name = loop.optimizer_name(config)
    if name == "sgd":
        return torch.optim.SGD(
            params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
        )
    if name == "adam":
        return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.Adagrad(params, lr=config.lr, weight_decay=config.weight_decay)


@torch.no_grad()
def evaluate(
    model: nn.Module,
    x: Mapping[str, torch.Tensor],
    y: torch.Tensor,
    index: torch.Tensor,
    batch_size: int = 512,
) -> dict[str, tuple[float, float]]:
    """Per-head (mean cross-entropy, accuracy) on ``index``, in eval mode."""
    was_training = model.training
    model.eval()
    loss_sum: dict[str, float] = {}
    correct: dict[str, int] = {}
    for start in range(0, len(index), batch_size):
        batch = index[start : start + batch_size]
        target = y[batch]
        for head, logits in model({m: t[batch] for m, t in x.items()}).items():
            loss = F.cross_entropy(logits, target, reduction="sum")
            loss_sum[head] = loss_sum.get(head, 0.0) + float(loss)
            correct[head] = correct.get(head, 0) + int((logits.argmax(1) == target).sum())
    model.train(was_training)
    n = len(index)
    return {head: (loss_sum[head] / n, correct[head] / n) for head in loss_sum}


@torch.no_grad()
def evaluate_per_sample(
    model: nn.Module,
    x: Mapping[str, torch.Tensor],
    y: torch.Tensor,
    index: torch.Tensor,
    metric: str = "loss",
    batch_size: int = 512,
) -> dict[str, np.ndarray]:
    """Per-head cross-entropy (``metric="loss"``) or correctness (``"acc"``, 0/1) of every
    sample of ``index``, in eval mode: the values whose means :func:`evaluate` returns."""
    if metric not in ("loss", "acc"):
        raise ValueError(f"unknown metric {metric!r}; valid: loss, acc")
    was_training = model.training
    model.eval()
    parts: dict[str, list[np.ndarray]] = {}
    for start in range(0, len(index), batch_size):
        batch = index[start : start + batch_size]
        target = y[batch]
        for head, logits in model({m: t[batch] for m, t in x.items()}).items():
            if metric == "loss":
                value = F.cross_entropy(logits, target, reduction="none")
            else:
                value = (logits.argmax(1) == target).double()
            parts.setdefault(head, []).append(value.double().cpu().numpy())
    model.train(was_training)
    return {head: np.concatenate(values) for head, values in parts.items()}


# The splits whose per-class accuracy a finished run reports (val to choose or describe, test
# to report), at the last epoch and at the best val epoch
CLASS_SPLITS = ("val", "test")

# selection -> split -> head -> accuracy of each class (None: the split has no sample of it)
ClassAccuracy = dict[str, dict[str, dict[str, list[float | None]]]]


def evaluate_per_class(
    model: nn.Module,
    x: Mapping[str, torch.Tensor],
    y: torch.Tensor,
    index: torch.Tensor,
    batch_size: int = 512,
) -> dict[str, list[float | None]]:
    """Per-head accuracy of each class (0..max label of ``y``) on ``index``, in eval mode;
    ``None`` for a class with no sample there."""
    correct = evaluate_per_sample(model, x, y, index, "acc", batch_size)
    labels = y[index].cpu().numpy()
    n_classes = int(y.max()) + 1
    counts = np.bincount(labels, minlength=n_classes)

    def per_class(hits: np.ndarray) -> list[float | None]:
        right = np.bincount(labels, weights=hits, minlength=n_classes)
        return [float(h / n) if n else None for h, n in zip(right, counts, strict=True)]

    return {head: per_class(hits) for head, hits in correct.items()}


def class_accuracy(
    model: nn.Module,
    x: Mapping[str, torch.Tensor],
    y: torch.Tensor,
    eval_index: Mapping[str, torch.Tensor],
    splits: Sequence[str],
    last_state: Mapping[str, torch.Tensor] | None,
    batch_size: int = 512,
) -> ClassAccuracy:
    """A finished run's per-head accuracy of each class on ``splits``: at the last epoch
    (``"last"``) and, where the model holds the restored best val epoch's weights and
    ``last_state`` the last epoch's, at the best val epoch too (``"best_val"``)."""

    def measure() -> dict[str, dict[str, list[float | None]]]:
        return {s: evaluate_per_class(model, x, y, eval_index[s], batch_size) for s in splits}

    current = measure()
    if last_state is None:  # the model's weights are the last epoch's
        return {"last": current}
    best = copy.deepcopy(model.state_dict())
    model.load_state_dict(last_state)
    last = measure()
    model.load_state_dict(best)
    return {"last": last, "best_val": current}


class Trainer:
    """Train one model; ``fit`` returns ``self`` with the learned state in ``*_`` attributes.

    Attributes after ``fit``: ``model_`` (on ``device_``, with the best val epoch's weights if
    ``restore_best``), ``history_`` (a tidy DataFrame: epoch, head, split, loss, acc; epoch 0
    is the model before training), ``best_epoch_``, ``epochs_run_``, ``seconds_``,
    ``train_seconds_`` (time in optimisation steps only) and ``device_``; ``class_accuracy()``
    measures each class at the last and the best val epoch.

    ``fit`` is ``start`` + ``train_epochs`` + ``finish``; callers that change the loss weights
    during training (online G-Blend) call ``train_epochs`` several times in between, and the
    optimizer state, the learning-rate schedule and the history carry on across the calls.
    """

    def __init__(self, config: TrainConfig | None = None) -> None:
        self.config = config or TrainConfig()

    def fit(
        self,
        model: nn.Module,
        x: Mapping[str, torch.Tensor],
        y: torch.Tensor,
        splits: Mapping[str, np.ndarray],
        loss_weights: Mapping[str, float] | None = None,
    ) -> Trainer:
        self.start(model, x, y, splits)
        self.train_epochs(self.config.epochs, loss_weights)
        return self.finish()

    def start(
        self,
        model: nn.Module,
        x: Mapping[str, torch.Tensor],
        y: torch.Tensor,
        splits: Mapping[str, np.ndarray],
    ) -> Trainer:
        """Move model and data to the device, build the optimizer, record epoch 0."""
        cfg = self.config
        self._run = run = loop.Run(cfg, splits)
        self._started = time.perf_counter()
        self.device_ = str(device := resolve_device(cfg.device))
        torch.manual_seed(cfg.seed)  # dropout draws from the global generator
        self.model_ = model.to(device)
        self._x = {m: t.to(device) for m, t in x.items()}
        self._y = y.to(device)
        self._eval_index = {s: t.to(device) for s, t in run.eval_index.items()}
        self.optimizer_ = make_optimizer(self.model_.parameters(), cfg)
        self.train_seconds_ = 0.0
        self._best_state = self._last_state = None
        loop.record([run], self, 0)
        self.heads_ = run.heads
        return self

    @property
    def history_(self) -> pd.DataFrame:
        return self._run.history

    @property
    def best_epoch_(self) -> int:
        return self._run.best_epoch

    @property
    def epochs_run_(self) -> int:
        return self._run.epochs_run

    @property
    def stopped_(self) -> bool:
        return self._run.stopped

    @property
    def loss_weights_(self) -> dict[str, float]:
        return self._run.loss_weights

    @property
    def lr_(self) -> float:
        """The learning rate the next epoch will use."""
        return self._run.lr(self._run.epochs_run + 1)

    def measure(self, split: str) -> dict[str, tuple[float, float]]:
        """Per-head (loss, acc) of the current weights on one of ``EVAL_SPLITS``."""
        return evaluate(
            self.model_, self._x, self._y, self._eval_index[split], self.config.eval_batch_size
        )

    def class_accuracy(self, splits: Sequence[str] = CLASS_SPLITS) -> ClassAccuracy:
        """Per-head accuracy of each class on ``splits`` of the finished run
        (:func:`class_accuracy`)."""
        return class_accuracy(
            self.model_, self._x, self._y, self._eval_index, splits, self._last_state,
            self.config.eval_batch_size,
        )  # fmt: skip

    def measure_per_sample(self, split: str, metric: str = "loss") -> dict[str, np.ndarray]:
        """Per-head loss or correctness of every sample of one of ``EVAL_SPLITS``."""
        return evaluate_per_sample(
            self.model_,
            self._x,
            self._y,
            self._eval_index[split],
            metric,
            self.config.eval_batch_size,
        )

    def train_epochs(
        self,
        n: int,
        loss_weights: Mapping[str, float] | None = None,
        record_every_epoch: bool = True,
    ) -> Trainer:
        """Train ``n`` more epochs on the weighted sum of head losses (default: all heads, 1).

        With ``record_every_epoch=False`` only the last of the ``n`` epochs is measured (the
        G-Blend estimation copies need the losses before and after, nothing in between).
        """
        self._run.set_loss_weights(loss_weights)
        self.train_seconds_ += loop.train(
            [self._run], self, n, record_every_epoch, progress=self.config.progress
        )
        return self

    def finish(self) -> Trainer:
        """Restore the best val epoch's weights (if ``restore_best``; the last epoch's are kept
        for :meth:`class_accuracy`) and stop the clock."""
        if self._best_state is not None:
            self._last_state = copy.deepcopy(self.model_.state_dict())
            self.model_.load_state_dict(self._best_state)
        self.seconds_ = time.perf_counter() - self._started
        return self

    # --- the execution of one run, for gblend.loop.train -----------------------------------

    def train_epoch(self, orders: Sequence[torch.Tensor | None], lrs: Sequence[float]):
        (order,) = orders
        weights = {h: w for h, w in self._run.loss_weights.items() if w > 0}
        model, x, y, optimizer = self.model_, self._x, self._y, self.optimizer_
        weighting = getattr(model, "loss_weighting", None)  # learned loss weights, if any
        for group in optimizer.param_groups:
            group["lr"] = lrs[0]
        model.train()
        order = order.to(self._y.device)
        for start in range(0, len(order), self.config.batch_size):
            batch = order[start : start + self.config.batch_size]
            loss = loop.weighted_loss(
                model({m: t[batch] for m, t in x.items()}), y[batch], weights, weighting=weighting
            )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        return [float(loss.detach())]

    def measure_runs(self, active: Sequence[bool]):
        return [{split: self.measure(split) for split in self._eval_index}]

    def keep_best(self, run: int) -> None:
        self._best_state = copy.deepcopy(self.model_.state_dict())
