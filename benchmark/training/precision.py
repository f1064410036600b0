"""Numeric precision and device speed settings of a run: autocast, the fp16 grad scaler,
channels_last for convolutional encoders and cudnn autotuning.

``training.precision`` is ``auto`` (bf16 on CUDA, fp32 on CPU), ``fp32``, ``bf16`` or ``fp16``.
``fp32`` is exactly the plain loop: no autocast, no scaler, no memory-format change, so a CPU run
is bit-identical to what it was before precision existed.  The lower precisions autocast the
forward pass and the loss (and prediction); parameters, optimiser state and the returned
probabilities stay fp32.  fp16 scales the loss (``torch.amp.GradScaler``) against underflow.

The run identity holds the configured value (``auto`` included, like ``device: auto``, which it
resolves with); the resolved value is :attr:`Precision.name`, reported in ``TrainResult``.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
from torch import nn

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_precision(name: str, device: torch.device) -> str:
    """``auto`` -> ``bf16`` on CUDA, ``fp32`` elsewhere; explicit names are kept."""
    if name == "auto":
        return "bf16" if device.type == "cuda" else "fp32"
    if name not in DTYPES:
        raise ValueError(f"training.precision: {name!r} is not one of auto, {', '.join(DTYPES)}")
    return name


def is_convolutional(module: nn.Module) -> bool:
    """More than one Conv2d: a CNN (a ViT/Swin has exactly one, its patch embedding)."""
    return sum(isinstance(m, nn.Conv2d) for m in module.modules()) > 1


@dataclass(frozen=True)
class Precision:
    """The resolved settings of one run on one device."""

    name: str                   # fp32 | bf16 | fp16 (resolved)
    device: torch.device
    channels_last: bool = False

    @classmethod
    def for_run(cls, name: str, device: torch.device, model: nn.Module | None = None) -> Precision:
        """Resolve ``name``; on CUDA also turn on cudnn autotuning and channels_last for CNNs."""
        resolved = resolve_precision(name, device)
        cuda = device.type == "cuda"
        if cuda:
            torch.backends.cudnn.benchmark = True
        return cls(resolved, device, channels_last=bool(cuda and model is not None and is_convolutional(model)))

    @property
    def dtype(self) -> torch.dtype:
        return DTYPES[self.name]

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.name == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def prepare(self, model: nn.Module) -> nn.Module:
        """Move the model's 4-D weights to channels_last where that is on (a no-op otherwise)."""
        if self.channels_last:
            model.to(memory_format=torch.channels_last)
        return model

    def scaler(self) -> torch.amp.GradScaler | None:
        """A loss scaler for fp16; None for fp32 and bf16 (their exponent range needs none)."""
        if self.name != "fp16":
            return None
        return torch.amp.GradScaler(self.device.type)


FP32_CPU = Precision("fp32", torch.device("cpu"))
