"""Export a trained fixed-point "cnn-small" state as a plain float PyTorch model.

The file is `torch.save({"arch", "state_dict", "config"})` with plain tensors, strings, ints
and floats only (loadable with weights_only=True). The weights are the fixed-point model's
compute weights (Q12 weights, biases at their accumulator scale) as float32, so the float
model's predictions follow the integer model's.

The model's input: uint8 RGB pixels, channels last as rendered, become float32 channels first
as (p - 128) / 128. That is `MODEL_INPUT` (an InputTransform), recorded in the file as
config["normalization"] = {"mean": 128.0, "scale": 128.0}, and the transform that
useful_work.export_dataset.RenderedDataset applies by default, so a DataLoader batch of a
downloaded dataset goes into a downloaded model as it is. Rebuilding the model needs nothing
from this package:

    import torch, torch.nn as nn
    ck = torch.load("model.pt", weights_only=True)
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.MaxPool2d(2), nn.ReLU(),
        nn.Conv2d(8, 16, 3, padding=1), nn.MaxPool2d(2), nn.ReLU(),
        nn.Flatten(), nn.Linear(ck["config"]["feat_dim"], ck["config"]["outputs"]),
    )
    net.load_state_dict(ck["state_dict"]); net.eval()
    norm = ck["config"]["normalization"]
    # images: uint8 [B, H, W, 3]
    out = net((images.permute(0, 3, 1, 2).float() - norm["mean"]) / norm["scale"])

out[:, :3] are the logits of 1, 2, 3 lights; with the light-direction objective, out[:, 3:] is
the dominant light direction (a unit vector when the model is right).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from useful_work.model import ACC1_FRAC, ACC2_FRAC, FRAC_W, ModelConfig, Params, compute_weights
from useful_work.reference import conv_weight_from_gemm
from useful_work.specs import TrainSpec
from useful_work.train_task import model_config
from useful_work.trainer import decode_state

ARCH = "cnn-small"
FORMAT_VERSION = 2  # 2: config["normalization"] records the input transform
INPUT_MEAN = 128.0
INPUT_SCALE = 128.0  # the fixed-point model reads pixels as Q7: (p - 128) / 2^7


@dataclass(frozen=True)
class InputTransform:
    """uint8 RGB pixels [..., H, W, 3] (numpy or torch) -> float32 [..., 3, H, W] = (p - mean) /
    scale.

    Works on one image or a batch, so it serves as a Dataset transform as well as on whole arrays.
    """

    mean: float = INPUT_MEAN
    scale: float = INPUT_SCALE

    def __call__(self, pixels: np.ndarray | torch.Tensor) -> torch.Tensor:
        t = torch.as_tensor(np.asarray(pixels)) if not isinstance(pixels, torch.Tensor) else pixels
        if t.dtype != torch.uint8 or t.dim() < 3 or t.shape[-1] != 3:
            raise ValueError(
                f"expected uint8 RGB pixels [..., H, W, 3], got {tuple(t.shape)} {t.dtype}"
            )
        return (t.movedim(-1, -3).to(torch.float32) - self.mean) / self.scale

    def to_json(self) -> dict[str, float]:
        return {"mean": float(self.mean), "scale": float(self.scale)}

    @classmethod
    def of_checkpoint(cls, checkpoint: dict[str, Any]) -> InputTransform:
        """The transform a model file records (files before version 2 took MODEL_INPUT,
        unrecorded)."""
        norm = checkpoint.get("config", {}).get("normalization")
        return cls(float(norm["mean"]), float(norm["scale"])) if norm else MODEL_INPUT


MODEL_INPUT = (
    InputTransform()
)  # what an exported model expects; RenderedDataset's default transform


class ExportedCNN(nn.Sequential):
    """conv3x3 3->8, max-pool 2, ReLU, conv3x3 8->16, max-pool 2, ReLU, flatten (c, h, w),
    linear."""

    def __init__(
        self, feat_dim: int, outputs: int, c_in: int = 3, c1: int = 8, c2: int = 16
    ) -> None:
        super().__init__(
            nn.Conv2d(c_in, c1, 3, padding=1),
            nn.MaxPool2d(2),
            nn.ReLU(),
            nn.Conv2d(c1, c2, 3, padding=1),
            nn.MaxPool2d(2),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(feat_dim, outputs),
        )


def exported_state_dict(params: Params, config: ModelConfig) -> dict[str, torch.Tensor]:
    """The float32 state_dict of ExportedCNN equal to the fixed-point model's compute weights."""
    cw = compute_weights({k: v.cpu() for k, v in params.items()}, config)

    def f(t: torch.Tensor, frac: int) -> torch.Tensor:
        return (t.to(torch.float64) / (1 << frac)).to(torch.float32).contiguous()

    return {
        "0.weight": f(conv_weight_from_gemm(cw.w1, config.c_in), FRAC_W),
        "0.bias": f(cw.b1, ACC1_FRAC),
        "3.weight": f(conv_weight_from_gemm(cw.w2, config.c1), FRAC_W),
        "3.bias": f(cw.b2, ACC2_FRAC),
        "7.weight": f(cw.wh.t(), FRAC_W),
        "7.bias": f(cw.bh, ACC2_FRAC),
    }


def export_checkpoint(state: bytes, spec: TrainSpec) -> dict[str, Any]:
    """The checkpoint dict for a train task's state bytes."""
    config = model_config(spec)
    ts = decode_state(state, config)
    return {
        "arch": ARCH,
        "state_dict": exported_state_dict(ts.params, config),
        "config": {
            "format_version": FORMAT_VERSION,
            "image_size": config.image_size,
            "in_channels": config.c_in,
            "channels": [config.c1, config.c2],
            "feat_dim": config.feat_dim,
            "outputs": config.head_outputs,
            "objective": spec.objective,
            "classes": [1, 2, 3],
            "input": "float32 NCHW = (uint8 NHWC pixels permuted to NCHW - mean) / scale",
            "normalization": MODEL_INPUT.to_json(),
            "step": ts.step,
        },
    }


def export_model(state: bytes, spec: TrainSpec, path: str | Path) -> Path:
    """Write the exported model file for a train task's state; returns the path."""
    path = Path(path)
    torch.save(export_checkpoint(state, spec), path)
    return path


def model_from_checkpoint(checkpoint: dict[str, Any]) -> ExportedCNN:
    if checkpoint.get("arch") != ARCH:
        raise ValueError(f"not a {ARCH} checkpoint: arch {checkpoint.get('arch')!r}")
    cfg = checkpoint["config"]
    net = ExportedCNN(cfg["feat_dim"], cfg["outputs"], cfg["in_channels"], *cfg["channels"])
    net.load_state_dict(checkpoint["state_dict"])
    return net.eval()


def load_model(path: str | Path) -> ExportedCNN:
    """Load an exported model file as an ExportedCNN in eval mode."""
    return model_from_checkpoint(torch.load(Path(path), weights_only=True))


@torch.no_grad()
def predict_exported(
    net: nn.Module, images: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(predicted light counts 1..3 [B], direction [B, 3] or None) for uint8 images [B, H, W, 3]."""
    out = net(MODEL_INPUT(images.cpu()))
    return out[:, :3].argmax(dim=1) + 1, (out[:, 3:] if out.shape[1] > 3 else None)
