"""Float32 PyTorch twin of the fixed-point "cnn-small", for comparing step time and accuracy.

Same layers, same flatten order (c, h, w), same input scaling ((pixel - 128) / 128), same
initial weights (converted from the fixed-point master weights), same minibatches and SGD
hyper-parameters (torch.optim.SGD with momentum, dampening 0). Never used in consensus.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from useful_work.model import DIR_FRAC, FRAC_MASTER, ModelConfig, Params
from useful_work.trainer import DIR_LOSS_WEIGHT


def images_to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 [B, H, W, 3] -> float32 NCHW in [-1, 1): the fixed-point model's Q7 input as a
    float."""
    return (images.permute(0, 3, 1, 2).to(torch.float32) - 128.0) / 128.0


def conv_weight_from_gemm(w: torch.Tensor, c_in: int) -> torch.Tensor:
    """GEMM layout [9*C_in, C_out] (rows ky, kx, c) -> PyTorch conv layout [C_out, C_in, 3, 3]."""
    return w.reshape(3, 3, c_in, -1).permute(3, 2, 0, 1).contiguous()


class ReferenceCNN(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.conv1 = nn.Conv2d(config.c_in, config.c1, 3, padding=1)
        self.conv2 = nn.Conv2d(config.c1, config.c2, 3, padding=1)
        self.head = nn.Linear(config.feat_dim, 3)
        self.direction = nn.Linear(config.feat_dim, 3) if config.direction else None

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        x = F.relu(F.max_pool2d(self.conv1(x), 2))
        x = F.relu(F.max_pool2d(self.conv2(x), 2))
        f = x.flatten(1)
        return self.head(f), (self.direction(f) if self.direction is not None else None)

    @torch.no_grad()
    def load_fixed(self, params: Params) -> ReferenceCNN:
        """Copy Q24 master parameters into this module (float32)."""

        def f(name: str) -> torch.Tensor:
            return (params[name].to(torch.float64) / (1 << FRAC_MASTER)).to(torch.float32)

        c = self.config
        self.conv1.weight.copy_(conv_weight_from_gemm(f("conv1.weight"), c.c_in))
        assert self.conv1.bias is not None and self.conv2.bias is not None  # built with biases
        self.conv1.bias.copy_(f("conv1.bias"))
        self.conv2.weight.copy_(conv_weight_from_gemm(f("conv2.weight"), c.c1))
        self.conv2.bias.copy_(f("conv2.bias"))
        self.head.weight.copy_(f("head.weight").t())
        self.head.bias.copy_(f("head.bias"))
        if self.direction is not None:
            self.direction.weight.copy_(f("direction.weight").t())
            self.direction.bias.copy_(f("direction.bias"))
        return self


def reference_loss(
    logits: torch.Tensor,
    direction: torch.Tensor | None,
    counts: torch.Tensor,
    dirs: torch.Tensor | None,
) -> torch.Tensor:
    """Mean cross-entropy (+ DIR_LOSS_WEIGHT * mean 0.5 |r - y|^2 for the direction head): the
    fixed-point objective."""
    loss = F.cross_entropy(logits, counts - 1)
    if direction is not None:
        assert dirs is not None
        target = dirs.to(torch.float32) / (1 << DIR_FRAC)
        loss = loss + DIR_LOSS_WEIGHT * 0.5 * (direction - target).pow(2).sum(dim=1).mean()
    return loss


@dataclass
class ReferenceTrainer:
    """A ReferenceCNN with its SGD-with-momentum optimiser."""

    model: ReferenceCNN
    optimizer: torch.optim.Optimizer

    @classmethod
    def create(
        cls, config: ModelConfig, params: Params, lr: float, momentum: float
    ) -> ReferenceTrainer:
        model = ReferenceCNN(config).load_fixed(params)
        return cls(model, torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum))

    def step(self, images: torch.Tensor, counts: torch.Tensor, dirs: torch.Tensor | None) -> float:
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        logits, direction = self.model(images_to_float(images))
        loss = reference_loss(logits, direction, counts, dirs)
        loss.backward()
        self.optimizer.step()
        return float(loss.detach())
