"""Train several independent runs of one architecture together, as one stacked model.

This is an execution strategy, not a second definition of training: each run is the run that
:class:`gblend.train.Trainer` (the reference) trains with ``replace(config, seed=seeds[r],
lr=lrs[r])``, and everything but the arithmetic of the mini-batches (checks, T', mini-batch
order, loss weights and their default, learning-rate schedule, history, best epoch, patience,
the non-finite loss check, the epoch loop) is :mod:`gblend.loop`, shared with the reference.

The study is a grid of many small runs; one at a time they leave a GPU idle and a CPU core
busy with Python. Here R runs that share an architecture and a :class:`TrainConfig` but differ
in seed (initial weights, shuffling, and their own data split), loss weights and learning rate
are trained in one process:
their parameters are stacked (``torch.func.stack_module_state``) and every step evaluates all
R models with ``vmap``. Each run keeps its own data, mini-batch order, optimizer state, best
epoch and early stopping, and gets its own history, exactly as :class:`gblend.train.Trainer`
would record it; parameters a run's loss does not reach are not stepped (no weight decay
either), as PyTorch's optimizers skip parameters without a gradient.

Same seeds give the same runs as training them one at a time, up to floating-point rounding
(batched matrix products sum in another order); ``tests/test_batched.py`` states the tolerance.
Dropout draws differ from the single-run trainer (``vmap`` draws its own random numbers).
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, grad_and_value, stack_module_state, vmap
from torch.nn import functional as F

from gblend import loop
from gblend.loop import EVAL_SPLITS
from gblend.train import (
    CLASS_SPLITS,
    ClassAccuracy,
    TrainConfig,
    class_accuracy,
    resolve_device,
)


@dataclass
class RunData:
    """One run's data: per-modality tensors, labels and its own split indices."""

    x: Mapping[str, torch.Tensor]
    y: torch.Tensor
    splits: Mapping[str, np.ndarray]


def _pad_indices(
    indices: Sequence[torch.Tensor], width: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack index vectors of different lengths on the host: (R, W) indices padded with 0, and
    their mask; W is ``width``, or the longest length when 0."""
    width = width or max(1, max(len(i) for i in indices))
    out = torch.zeros(len(indices), width, dtype=torch.long)
    mask = torch.zeros(len(indices), width)
    for r, idx in enumerate(indices):
        out[r, : len(idx)] = idx
        mask[r, : len(idx)] = 1.0
    return out, mask


def _epoch_batches(
    orders: Sequence[torch.Tensor], batch_size: int, device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One epoch's mini-batches of every run, built on the host and moved once.

    Returns indices and mask of shape (steps, R, batch_size) and which runs have a batch at
    each step, (steps, R). A run with fewer steps is padded with empty (masked) batches.
    """
    steps = max(1, max(math.ceil(len(o) / batch_size) for o in orders))
    idx, mask = _pad_indices(orders, steps * batch_size)
    idx = idx.view(len(orders), steps, batch_size).transpose(0, 1).contiguous()
    mask = mask.view(len(orders), steps, batch_size).transpose(0, 1).contiguous()
    return idx.to(device), mask.to(device), mask.amax(dim=2).to(device)


def _used_parameters(model: nn.Module, heads: Sequence[str], x: Mapping[str, torch.Tensor]):
    """Names of the parameters that the loss of ``heads`` reaches. The others get no gradient
    in :class:`Trainer` (``None``), so PyTorch's optimizers leave them alone: no weight decay,
    no step."""
    model.zero_grad(set_to_none=True)
    logits = model(x)
    sum(logits[h].sum() for h in heads).backward()
    used = {name for name, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    return used


class _FlatParameters:
    """The stacked parameters as views into one (R, P) buffer, so that an optimizer step is a
    few whole-buffer operations rather than several per parameter tensor (on a GPU each
    operation is a kernel launch, and launches, not arithmetic, bound these small models)."""

    def __init__(self, params: Mapping[str, torch.Tensor]) -> None:
        self.runs = next(iter(params.values())).shape[0]
        self.sizes = {name: p[0].numel() for name, p in params.items()}
        self.flat = torch.cat([p.reshape(self.runs, -1) for p in params.values()], dim=1)
        self.views = self.unflatten(self.flat, params)

    def unflatten(self, flat: torch.Tensor, like: Mapping[str, torch.Tensor]):
        views, start = {}, 0
        for name, size in self.sizes.items():
            views[name] = flat[:, start : start + size].view(like[name].shape)
            start += size
        return views

    def flatten(self, tensors: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return torch.cat([tensors[name].reshape(self.runs, -1) for name in self.sizes], dim=1)

    def per_name(self, values: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """(R, P) from one (R,) vector per parameter name."""
        return torch.cat(
            [values[name][:, None].expand(-1, size) for name, size in self.sizes.items()], dim=1
        )


class _Optimizer:
    """SGD with momentum, Adam and AdaGrad on the flat (R, P) parameters, with PyTorch's update
    rules, applied only to the runs that are active at this step and, in each run, only to the
    parameters its loss reaches (``used``, (R, P); the others stay untouched).

    On a GPU the whole buffer is updated at once (few kernel launches); on a CPU column by
    column block, small enough to stay in cache between the update's dozen passes."""

    CPU_BLOCK_BYTES = 1 << 19

    def __init__(self, flat: torch.Tensor, config: TrainConfig, used: torch.Tensor) -> None:
        self.config = config
        self.name = loop.optimizer_name(config)
        runs, size = flat.shape
        self.used = None if bool(used.all()) else used.bool()  # None: every parameter is used
        names = {"sgd": ("buf",) if config.momentum else (), "adam": ("m", "v")}
        self.state = {k: torch.zeros_like(flat) for k in names.get(self.name, ("sum",))}
        self.steps = torch.zeros(runs, 1, device=flat.device)
        width = size if flat.device.type != "cpu" else max(1, self.CPU_BLOCK_BYTES // (4 * runs))
        self.blocks = [slice(a, min(a + width, size)) for a in range(0, size, width)]

    @torch.no_grad()
    def step(self, p: torch.Tensor, g: torch.Tensor, lrs: torch.Tensor, active: torch.Tensor):
        """Update ``p`` (R, P) in place; ``lrs`` and ``active``: one value per run, (R,)."""
        self.steps += active[:, None]
        first = self.steps == 1
        run_on = active[:, None].bool()
        for cols in self.blocks:
            on = run_on if self.used is None else run_on & self.used[:, cols]
            state = {k: v[:, cols] for k, v in self.state.items()}
            self._update(p[:, cols], g[:, cols], lrs[:, None], on, first, state)

    def _update(self, p, g, lr, on, first, state) -> None:
        cfg = self.config
        if cfg.weight_decay:
            g = g + cfg.weight_decay * p
        if self.name == "sgd":
            if cfg.momentum:
                buf = state["buf"]
                buf.copy_(torch.where(on, torch.where(first, g, cfg.momentum * buf + g), buf))
                g = buf
            p.copy_(torch.where(on, p - lr * g, p))
        elif self.name == "adam":
            beta1, beta2, eps = 0.9, 0.999, 1e-8
            m, v = state["m"], state["v"]
            m.copy_(torch.where(on, beta1 * m + (1 - beta1) * g, m))
            v.copy_(torch.where(on, beta2 * v + (1 - beta2) * g * g, v))
            t = self.steps.clamp(min=1)
            denom = (v.sqrt() / torch.sqrt(1 - beta2**t)) + eps
            p.copy_(torch.where(on, p - (lr / (1 - beta1**t)) * m / denom, p))
        else:  # adagrad
            total = state["sum"]
            total.copy_(torch.where(on, total + g * g, total))
            p.copy_(torch.where(on, p - lr * g / (total.sqrt() + 1e-10), p))


class _Stacked:
    """R runs as one stacked model: the :class:`gblend.loop.Execution` of :class:`BatchedTrainer`.

    Each run's data is padded to a common number of samples and stacked, (R, N, ...); its
    evaluation sets are padded index vectors with masks; the parameters live in one (R, P)
    buffer and one step evaluates all R models with ``vmap``."""

    def __init__(self, models, data, runs: Sequence[loop.Run], config, device) -> None:
        self.config, self.device = config, device
        self.runs = len(models)
        size = max(len(d.y) for d in data)
        self.xs = {
            m: torch.stack(
                [F.pad(d.x[m], (*[0, 0] * (d.x[m].dim() - 1), 0, size - len(d.y))) for d in data]
            ).to(device)
            for m in data[0].x
        }
        self.ys = torch.stack([F.pad(d.y, (0, size - len(d.y))) for d in data]).to(device)
        self.eval_index = {
            s: tuple(t.to(device) for t in _pad_indices([r.eval_index[s] for r in runs]))
            for s in EVAL_SPLITS
        }
        self.base = copy.deepcopy(models[0]).to("meta")
        params, self.buffers = stack_module_state([m.to(device) for m in models])
        self.stacked = _FlatParameters({k: v.detach() for k, v in params.items()})
        self.params = self.stacked.views  # every step updates stacked.flat; these views follow
        self.best = self.stacked.flat.clone()
        self.run_index = torch.arange(self.runs, device=device)
        self.batched_logits = vmap(self._logits, randomness="different")
        self.sample = {m: t[:2].to(device) for m, t in data[0].x.items()}

    def _logits(self, p, b, x):
        return functional_call(self.base, (p, b), (x,))

    def set_loss_weights(self, models: Sequence[nn.Module], runs: Sequence[loop.Run]) -> None:
        """The stacked loss (heads with a positive weight in some run; a run's other heads
        get weight 0) and the optimizer, which steps only the parameters a run's loss reaches."""
        heads = sorted({h for r in runs for h, w in r.loss_weights.items() if w > 0})
        self.weights = torch.tensor(
            [[r.loss_weights.get(h, 0.0) for h in heads] for r in runs], device=self.device
        )

        def run_loss(p, b, w, x, y, mask):
            weights = {head: w[i] for i, head in enumerate(heads)}
            return loop.weighted_loss(self._logits(p, b, x), y, weights, mask)

        self.gradients = vmap(grad_and_value(run_loss), randomness="different")
        used_by_run = [
            _used_parameters(model, [h for h, w in r.loss_weights.items() if w > 0], self.sample)
            for model, r in zip(models, runs, strict=True)
        ]
        used = self.stacked.per_name(
            {
                name: torch.tensor([float(name in u) for u in used_by_run], device=self.device)
                for name in self.params
            }
        )
        self.optimizer = _Optimizer(self.stacked.flat, self.config, used)

    def train_epoch(self, orders: Sequence[torch.Tensor | None], lrs: Sequence[float]):
        empty = torch.zeros(0, dtype=torch.long)
        orders = [empty if o is None else o for o in orders]  # a stopped run: no batches
        # Indices live on the device for the whole epoch: no host work inside the step loop.
        epoch_idx, epoch_mask, has_batch = _epoch_batches(
            orders, self.config.batch_size, self.device
        )
        run_lrs = torch.tensor(lrs, device=self.device)
        last_loss = torch.zeros(self.runs, device=self.device)
        rows = self.run_index[:, None]
        for idx, mask, present in zip(epoch_idx, epoch_mask, has_batch, strict=True):
            x = {m: t[rows, idx] for m, t in self.xs.items()}
            grads, loss = self.gradients(
                self.params, self.buffers, self.weights, x, self.ys[rows, idx], mask
            )
            self.optimizer.step(self.stacked.flat, self.stacked.flatten(grads), run_lrs, present)
            last_loss = torch.where(present.bool(), loss.detach(), last_loss)
        return last_loss.tolist()  # one transfer, which also waits for the device

    @torch.no_grad()
    def measure_runs(self, active: Sequence[bool]):
        self.base.eval()
        eval_batch = self.config.eval_batch_size
        measured = [{} if a else None for a in active]
        for split, (idx, mask) in self.eval_index.items():
            sums: dict[str, torch.Tensor] = {}
            hits: dict[str, torch.Tensor] = {}
            for start in range(0, idx.shape[1], eval_batch):
                b_idx = idx[:, start : start + eval_batch]
                b_mask = mask[:, start : start + eval_batch]
                x = {m: t[self.run_index[:, None], b_idx] for m, t in self.xs.items()}
                target = self.ys[self.run_index[:, None], b_idx]
                for head, logit in self.batched_logits(self.params, self.buffers, x).items():
                    loss = F.cross_entropy(
                        logit.flatten(0, 1), target.flatten(), reduction="none"
                    ).view_as(b_mask)
                    sums[head] = sums.get(head, 0) + (loss * b_mask).sum(1)
                    right = (logit.argmax(-1) == target).float() * b_mask
                    hits[head] = hits.get(head, 0) + right.sum(1)
            # One transfer per split, not one per number.
            counts = mask.sum(1).tolist()
            losses = {h: v.tolist() for h, v in sums.items()}
            rights = {h: v.tolist() for h, v in hits.items()}
            for r, out in enumerate(measured):
                if out is not None:
                    out[split] = {
                        h: (losses[h][r] / counts[r], rights[h][r] / counts[r]) for h in sums
                    }
        self.base.train()
        return measured

    def keep_best(self, run: int) -> None:
        self.best[run] = self.stacked.flat[run]

    def final_state(self, run: int, best: bool) -> dict[str, torch.Tensor]:
        params = self.stacked.unflatten(self.best, self.params) if best else self.params
        return {
            **{k: v[run] for k, v in params.items()},
            **{k: v[run] for k, v in self.buffers.items()},
        }


class BatchedTrainer:
    """Train R runs of one architecture at once; the batched twin of :class:`Trainer`.

    ``fit(models, data, seeds, loss_weights=None, lrs=None)``: ``models[r]`` is run r's
    freshly initialised model (same architecture for all), ``data[r]`` its data and
    ``seeds[r]`` its seed; ``loss_weights`` is one mapping head -> weight for all runs or one
    per run (``None``: every head with weight 1, as in :class:`Trainer`), ``lrs`` one base
    learning rate per run (default: the config's ``lr`` for all; the schedule applies to
    each). Run r is the run of ``Trainer(replace(config, seed=seeds[r], lr=lrs[r]))``
    (``run_configs_``). After ``fit``: ``models_``, ``histories_``, ``best_epochs_``,
    ``epochs_run_``, ``loss_weights_`` (lists, one entry per run), ``train_seconds_``,
    ``seconds_`` and ``device_``; ``class_accuracy(r)`` measures run r's classes as
    :meth:`Trainer.class_accuracy <gblend.train.Trainer.class_accuracy>` does.
    """

    def __init__(self, config: TrainConfig | None = None) -> None:
        self.config = config or TrainConfig()

    def fit(
        self,
        models: Sequence[nn.Module],
        data: Sequence[RunData],
        seeds: Sequence[int],
        loss_weights: Mapping[str, float] | Sequence[Mapping[str, float] | None] | None = None,
        lrs: Sequence[float] | None = None,
    ) -> BatchedTrainer:
        cfg = self.config
        n_runs = len(models)
        if not n_runs or len(data) != n_runs or len(seeds) != n_runs:
            raise ValueError("models, data and seeds must be equally long and not empty")
        one = loss_weights is None or isinstance(loss_weights, Mapping)
        per_run = [loss_weights] * n_runs if one else list(loss_weights)
        base_lrs = [cfg.lr] * n_runs if lrs is None else list(lrs)
        if len(per_run) != n_runs or len(base_lrs) != n_runs:
            raise ValueError("give one loss-weight mapping and one learning rate per run")
        started = time.perf_counter()
        self.run_configs_ = [
            replace(cfg, seed=seed, lr=lr) for seed, lr in zip(seeds, base_lrs, strict=True)
        ]
        runs = [
            loop.Run(c, d.splits, name=f"run {r}")
            for r, (c, d) in enumerate(zip(self.run_configs_, data, strict=True))
        ]
        device = resolve_device(cfg.device)
        self.device_ = str(device)
        execution = _Stacked(models, data, runs, cfg, device)
        loop.record(runs, execution, 0)
        for run, weights in zip(runs, per_run, strict=True):
            run.set_loss_weights(weights)
        execution.set_loss_weights(models, runs)
        self.train_seconds_ = loop.train(runs, execution, cfg.epochs, progress=cfg.progress)
        self.models_ = []
        # the last epoch's weights, beside the restored best ones, for class_accuracy
        self._last_states = [
            copy.deepcopy(execution.final_state(r, False)) if cfg.restore_best else None
            for r in range(n_runs)
        ]
        for r, model in enumerate(models):
            model.load_state_dict(execution.final_state(r, cfg.restore_best))
            self.models_.append(model)
        self._data, self._eval_index = list(data), [r.eval_index for r in runs]
        self.histories_ = [r.history for r in runs]
        self.best_epochs_ = [r.best_epoch for r in runs]
        self.epochs_run_ = [r.epochs_run for r in runs]
        self.loss_weights_ = [r.loss_weights for r in runs]
        self.seconds_ = time.perf_counter() - started
        return self

    def class_accuracy(self, run: int, splits: Sequence[str] = CLASS_SPLITS) -> ClassAccuracy:
        """Run ``run``'s per-head accuracy of each class on ``splits``, on the host
        (:func:`gblend.train.class_accuracy`)."""
        data = self._data[run]
        return class_accuracy(
            self.models_[run], data.x, data.y, self._eval_index[run], splits,
            self._last_states[run], self.config.eval_batch_size,
        )  # fmt: skip
