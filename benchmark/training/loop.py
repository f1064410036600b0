"""The one training loop for every method; it calls only the method contract.

AdamW (unless the method configures its own optimiser), the shared budget (``max_epochs`` with
early stopping: ``patience``, ``min_epochs``), validation-based model selection on the dataset's
primary metric, deterministic under a seed.  Early stopping is the same rule for every method: in
the method's *last* stage (earlier stages, e.g. a contrastive pre-training, always run in full),
once ``min_epochs`` are done, training stops after ``patience`` epochs in which neither the
validation score of the whole model nor that of any selection group improved.  The test split is
never touched here.  ``training.precision`` (``benchmark.training.precision``) autocasts the
forward pass and the loss; with ``fp32`` (the CPU default) the loop is the plain fp32 loop.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from benchmark.config.schema import TrainingConfig
from benchmark.training.device import resolve_device
from benchmark.training.precision import FP32_CPU, Precision
from core.batch import PreparedData, SplitData
from core.metrics import compute_metrics
from methods.base import FusionMethod, OptimizerSettings, SelectionGroup


@dataclass
class TrainResult:
    best_epoch: int
    best_val: float
    history: list[dict[str, float]] = field(default_factory=list)
    group_best_epochs: dict[str, int] = field(default_factory=dict)
    precision: str = "fp32"          # the resolved training.precision the run trained in
    epochs_trained: int = 0          # epochs actually run (< max_epochs when it stopped early)
    stopped_early: bool = False


def group_validation_score(method: FusionMethod, data: PreparedData, group: SelectionGroup,
                           device: torch.device, batch_size: int, precision: Precision = FP32_CPU) -> float:
    """Primary validation metric of the prediction that uses only the group's modalities.

    Starts from the validation mask (masked data stays removed) and scores only the rows that keep
    at least one of the group's modalities; NaN when there are none or the metric is undefined.
    """
    val = data.splits["val"]
    present = val.present & np.asarray(group.modalities, bool)[None, :]
    rows = present.any(axis=1)
    if not rows.any():
        return float("nan")
    probs = predict(method, val, data.train_prior, device, batch_size, present=present, precision=precision)
    metrics = compute_metrics(data.info.task, val.labels[rows], probs[rows])
    return float(metrics.get(data.info.primary_metric, float("nan")))


def selection_group_state(state: dict[str, torch.Tensor], group: SelectionGroup) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in state.items() if k.startswith(group.parameter_prefixes)}


@torch.no_grad()
def predict(method: FusionMethod, split: SplitData, prior: np.ndarray, device: torch.device,
            batch_size: int, present: np.ndarray | None = None, precision: Precision | None = None) -> np.ndarray:
    """(N, K) probabilities for a split under its mask, or under another ``present`` scenario.

    Samples with no modality left are not shown to the method: they get the training prior.
    ``precision`` (default: fp32) autocasts the forward pass; the probabilities are float64.
    """
    precision = precision or Precision("fp32", device)
    method.eval()
    base_present = split.present if present is None else (np.asarray(present, bool) & split.real_present)
    usable = base_present.any(axis=1)
    out = np.tile(np.asarray(prior, dtype=np.float64), (len(split), 1))
    rows = np.flatnonzero(usable)
    for start in range(0, len(rows), batch_size):
        index = rows[start:start + batch_size]
        batch = split.batch(index, present=base_present[index]).without_labels()  # never the answers
        with precision.autocast():
            probs = method.predict_proba(batch.to(device, channels_last=precision.channels_last))
        out[index] = probs.float().cpu().numpy()
    return out


def train_method(method: FusionMethod, data: PreparedData, cfg: TrainingConfig, seed: int,
                 on_epoch: Callable[[int, dict[str, float]], None] | None = None) -> TrainResult:
    """Train with the method's stages; keep the state with the best validation primary metric."""
    device = resolve_device(cfg.device)
    method.to(device)
    precision = Precision.for_run(cfg.precision, device, method)
    precision.prepare(method)
    scaler = precision.scaler()
    train, val = data.splits["train"], data.splits["val"]
    rng = np.random.default_rng(seed)
    optimizer, scheduler = method.configure_optimizer(
        OptimizerSettings(lr=cfg.lr, weight_decay=cfg.weight_decay, epochs=cfg.max_epochs))
    best_state, best_val, best_epoch = None, -np.inf, -1
    groups = method.selection_groups()
    group_best: dict[str, tuple[float, int, dict[str, torch.Tensor]]] = {}
    history: list[dict[str, float]] = []
    epoch = 0
    metric = data.info.primary_metric
    stages = method.stages(cfg.max_epochs)
    last_improvement, stopped_early = -1, False
    for stage_index, stage in enumerate(stages):
        final_stage = stage_index == len(stages) - 1
        stage_start = epoch
        if stopped_early:
            break
        for _ in range(stage.epochs):
            method.train()
            sums: dict[str, float] = {}
            n_batches = 0
            if stage.full_batch:
                batches = [np.arange(len(train))]
            else:
                custom = method.train_batches(train.labels, cfg.batch_size, rng)
                if custom is None:
                    order = rng.permutation(len(train))
                    custom = (order[i:i + cfg.batch_size] for i in range(0, len(order), cfg.batch_size))
                batches = custom
            for index in batches:
                batch = train.batch(np.asarray(index), train=True).to(device, channels_last=precision.channels_last)
                with precision.autocast():
                    losses = method.training_step(batch, stage)
                loss = losses["loss"]
                if not torch.isfinite(loss):
                    values = ", ".join(f"{k}={float(v.detach()):.6g}" for k, v in losses.items())
                    raise FloatingPointError(f"non-finite loss in epoch {epoch} (stage {stage.name}, batch "
                                             f"{n_batches}): {values}")
                if optimizer is not None and loss.requires_grad:
                    optimizer.zero_grad(set_to_none=True)
                    if scaler is None:
                        loss.backward()
                        if cfg.grad_clip > 0:
                            torch.nn.utils.clip_grad_norm_(method.parameters(), cfg.grad_clip)
                        optimizer.step()
                    else:  # fp16: scaled loss; unscale before clipping; skip steps with inf grads
                        scaler.scale(loss).backward()
                        if cfg.grad_clip > 0:
                            scaler.unscale_(optimizer)
                            torch.nn.utils.clip_grad_norm_(method.parameters(), cfg.grad_clip)
                        scaler.step(optimizer)
                        scaler.update()
                for k, v in losses.items():
                    sums[k] = sums.get(k, 0.0) + float(v.detach())
                n_batches += 1
            method.on_epoch_end(epoch, stage)
            if scheduler is not None:
                scheduler.step()
            record = {f"train_{k}": v / max(n_batches, 1) for k, v in sums.items()}
            if stage.select_model and len(val):
                probs = predict(method, val, data.train_prior, device, cfg.eval_batch_size, precision=precision)
                val_metrics = compute_metrics(data.info.task, val.labels, probs)
                record.update({f"val_{k}": v for k, v in val_metrics.items()})
                score = val_metrics.get(metric, float("nan"))
                score = -np.inf if np.isnan(score) else score
                if best_state is None or score > best_val:
                    best_val, best_epoch, last_improvement = score, epoch, epoch
                    best_state = copy.deepcopy(method.state_dict())
                for name, group in groups.items():
                    group_score = group_validation_score(method, data, group, device, cfg.eval_batch_size,
                                                         precision)
                    record[f"val_{metric}_{name}"] = group_score
                    group_score = -np.inf if np.isnan(group_score) else group_score
                    if name not in group_best or group_score > group_best[name][0]:
                        group_best[name] = (group_score, epoch, selection_group_state(method.state_dict(), group))
                        last_improvement = epoch
            history.append(record)
            if on_epoch is not None:
                on_epoch(epoch, record)
            epoch += 1
            if (final_stage and stage.select_model and len(val) and cfg.patience > 0 and epoch >= cfg.min_epochs
                    and epoch - 1 - max(last_improvement, stage_start - 1) >= cfg.patience):
                stopped_early = True
                break
    if best_state is not None:
        for _, _, group_state in group_best.values():  # each group from its own best epoch
            best_state.update(group_state)
        method.load_state_dict(best_state)
        if group_best:
            best_epoch = max(e for _, e, _ in group_best.values())
        method.eval()
        method.fit_on_validation(val.batch(index).to(device, channels_last=precision.channels_last)
                                 for index in np.array_split(np.arange(len(val)),
                                                             max(1, -(-len(val) // cfg.eval_batch_size))))
        probs = predict(method, val, data.train_prior, device, cfg.eval_batch_size, precision=precision)
        best_val = compute_metrics(data.info.task, val.labels, probs).get(metric, float("nan"))
    else:  # no validation split: last epoch (CMML spec's rule, applied to every method)
        best_epoch = epoch - 1
    return TrainResult(best_epoch, float(best_val) if np.isfinite(best_val) else float("nan"), history,
                       {name: e for name, (_, e, _) in group_best.items()}, precision.name, epoch, stopped_early)
