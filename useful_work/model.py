"""The fixed-point CNN "cnn-small": exact integer forward and backward passes.

Architecture (S = image size):
    conv3x3 3->8 (pad 1) + 2x2 max-pool + ReLU   -> 8 x S/2 x S/2
    conv3x3 8->16 (pad 1) + 2x2 max-pool + ReLU  -> 16 x S/4 x S/4, flattened in (c, h, w) order
    linear head -> 3 logits (light count 1..3); objective "light-direction" adds a linear
    regression head -> the 3-vector of the dominant light direction.
(ReLU after pooling equals pooling after ReLU, since ReLU is monotone; it is cheaper.)
Parameters: 4,467 (7,542 with the direction head); with momentum, 36 KB (60 KB) of state.

Values are integers throughout. Activations and activation gradients are held in float64
tensors (exact below 2^53, which every bound below keeps), so GEMMs need no int64 round trips;
parameters, logits and the loss are int64.

Fixed-point formats: an integer v in "Qf" stands for v / 2^f.
| value | format | clamp |
| --- | --- | --- |
| input pixels (uint8 - 128) | Q7, in [-1, 1) | - |
| master weights, biases, momentum, weight gradients | Q24 | 32-bit signed (int32 in the state) |
| compute weights (GEMM operand) | Q12 = shift_round(master, 12) | 16-bit signed (|w| < 8) |
| conv1 / conv2 / head accumulators (bias added at this scale) | Q19 / Q22 / Q22 | - |
| activations after pool + ReLU | Q10 | 16-bit (|a| < 32) |
| logits, direction outputs | Q16 | 24-bit (|z| < 128), 20-bit (|r| < 8) |
| softmax probabilities | Q20 | - |
| output gradients dL/dz, dL/dr (mean over the batch) | Q28 | 29-bit (|g| < 1) |
| activation gradients | Q24 | 24-bit (|g| < 0.5) |

Rescaling uses `shift_round`, and rounding and saturation are passed straight through in the
backward pass (the gradient of the unrounded function). The clamps make the operand bounds
given to `exact_matmul` true by construction, so it skips measuring them.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from useful_work.exact import (
    FLOAT_EXACT_BITS,
    clamp_bits,
    exact_matmul,
    exact_matmul_fp,
    shift_round,
)
from useful_work.intmath import (
    max_pool2x2_tie_broken,
    max_unpool2x2,
    tie_break_pattern,
)
from useful_work.prng import Prng

FRAC_IN = 7
FRAC_MASTER = 24
STATE_BITS = 32
FRAC_W = 12
W_BITS = 16
FRAC_ACT = 10
ACT_BITS = 16
FRAC_OUT = 16
LOGIT_BITS = 24
DIR_BITS = 20
FRAC_DOUT = 28
DOUT_BITS = 29
FRAC_GRAD = 24
GRAD_BITS = 24

IN_MAX = 128
W_MAX = (1 << (W_BITS - 1)) - 1
ACT_MAX = (1 << (ACT_BITS - 1)) - 1
DOUT_MAX = (1 << (DOUT_BITS - 1)) - 1
GRAD_MAX = (1 << (GRAD_BITS - 1)) - 1

ACC1_FRAC = FRAC_IN + FRAC_W  # 19
ACC2_FRAC = FRAC_ACT + FRAC_W  # 22
NUM_CLASSES = 3
DIR_FRAC = 14  # the renderer's fixed-point unit vectors


@dataclass(frozen=True)
class ModelConfig:
    """Sizes of one "cnn-small" model; the parameter list and its order follow from them."""

    image_size: int = 32
    direction: bool = False
    c_in: int = 3
    c1: int = 8
    c2: int = 16

    @property
    def feat_hw(self) -> int:
        return self.image_size // 4

    @property
    def feat_dim(self) -> int:
        return self.feat_hw * self.feat_hw * self.c2

    @property
    def head_outputs(self) -> int:
        return NUM_CLASSES + (3 if self.direction else 0)

    def gemm_macs_per_image(self) -> int:
        """Multiply-accumulates of one image's forward and backward pass (the GEMMs of `forward`
        and `backward`; the input image needs no gradient, so conv1 has no input-gradient GEMM).

        conv1: forward (9 c_in + 1) c1 S^2 (the +1 row is the pooling tie-break), weight gradient 9
        c_in c1 S^2;
        conv2: forward (9 c1 + 1) c2 (S/2)^2, weight and input gradients 9 c1 c2 (S/2)^2 each;
        heads: forward, weight and input gradients F * outputs each.
        """
        s1, s2 = self.image_size**2, (self.image_size // 2) ** 2
        conv1 = ((9 * self.c_in + 1) + 9 * self.c_in) * self.c1 * s1
        conv2 = ((9 * self.c1 + 1) + 2 * 9 * self.c1) * self.c2 * s2
        heads = 3 * self.feat_dim * self.head_outputs
        return conv1 + conv2 + heads

    def param_shapes(self) -> tuple[tuple[str, tuple[int, ...]], ...]:
        """Parameter names and shapes in canonical order; weights are in GEMM layout [K, N]."""
        shapes: list[tuple[str, tuple[int, ...]]] = [
            ("conv1.weight", (9 * self.c_in, self.c1)),
            ("conv1.bias", (self.c1,)),
            ("conv2.weight", (9 * self.c1, self.c2)),
            ("conv2.bias", (self.c2,)),
            ("head.weight", (self.feat_dim, NUM_CLASSES)),
            ("head.bias", (NUM_CLASSES,)),
        ]
        if self.direction:
            shapes += [("direction.weight", (self.feat_dim, 3)), ("direction.bias", (3,))]
        return tuple(shapes)


Params = dict[str, torch.Tensor]  # name -> int64 master values (Q24), in param_shapes order


# ---- exact GEMMs, with a split hook (tests force other chunkings; results must not change) ----


@dataclass(frozen=True)
class GemmSplit:
    max_chunk: int | None = None
    reverse_chunks: bool = False


_SPLIT: contextvars.ContextVar[GemmSplit] = contextvars.ContextVar(
    "gemm_split", default=GemmSplit()
)


@contextlib.contextmanager
def gemm_split(max_chunk: int | None = None, reverse_chunks: bool = False) -> Iterator[None]:
    """Run the model's exact GEMMs with a forced K-chunk size and order (for determinism tests)."""
    token = _SPLIT.set(GemmSplit(max_chunk, reverse_chunks))
    try:
        yield
    finally:
        _SPLIT.reset(token)


def _gemm(
    a: torch.Tensor, b: torch.Tensor, a_bound: int, b_bound: int, shift: int = 0
) -> torch.Tensor:
    """shift_round(a @ b, shift) for float64 tensors holding integers bounded by a_bound, b_bound.

    In float64 when the product provably stays below 2^53; otherwise (only at large batch and
    image sizes) through exact_matmul's int64-accumulated K-split, rescaled before returning.
    """
    split = _SPLIT.get()
    if a.shape[-1] * a_bound * b_bound < 1 << FLOAT_EXACT_BITS[torch.float64]:
        out = exact_matmul_fp(
            a,
            b,
            a_bound=a_bound,
            b_bound=b_bound,
            max_chunk=split.max_chunk,
            reverse_chunks=split.reverse_chunks,
        )
        return shift_round(out, shift)
    out = exact_matmul(
        a.to(torch.int64),
        b.to(torch.int64),
        a_bound=a_bound,
        b_bound=b_bound,
        max_chunk=split.max_chunk,
        reverse_chunks=split.reverse_chunks,
    )
    return shift_round(out, shift).to(torch.float64)


# ---- initialisation ----


def init_params(config: ModelConfig, key: bytes, device: str | torch.device = "cpu") -> Params:
    """Kaiming-uniform conv weights (bound sqrt(6/fan_in)), 1/sqrt(fan_in) heads, zero biases,
    from the PRNG."""
    prng = Prng(key, device)
    params: Params = {}
    for name, shape in config.param_shapes():
        n = math.prod(shape)
        if name.endswith(".bias"):
            params[name] = torch.zeros(shape, dtype=torch.int64, device=device)
            continue
        fan_in = shape[0]
        gain_sq = 6 if name.startswith("conv") else 1
        bound = math.isqrt((gain_sq << (2 * FRAC_MASTER)) // fan_in)
        params[name] = prng.integers(f"init.{name}", n, -bound, bound).view(shape)
    return params


# ---- layers ----
# Activations are float64 tensors holding integers, laid out [C, B, H, W]. Patch matrices have
# rows (ky, kx, c_in), then one row holding the pooling tie-break of each pixel, and columns
# (b, y, x). The conv GEMM's weights are [4 * W | 1], so it yields 4 * acc + tie-break and each
# 2x2 max-pool window has a unique winner (see intmath.max_pool2x2_tie_broken); the bias, the
# same across a window, is added after pooling.


def im2col3x3(x: torch.Tensor) -> torch.Tensor:
    """[C, B, H, W] -> [9*C + 1, B*H*W]: 3x3 patches with zero padding 1, then the tie-break row."""
    c, b, h, w = x.shape
    xp = F.pad(x, (1, 1, 1, 1))
    hp, wp = h + 2, w + 2
    out = torch.empty((9 * c + 1, b * h * w), dtype=x.dtype, device=x.device)
    view = xp.as_strided((3, 3, c, b, h, w), (wp, 1, b * hp * wp, hp * wp, wp, 1))
    out[: 9 * c].view(3, 3, c, b, h, w).copy_(view)
    out[9 * c].view(b, h, w).copy_(tie_break_pattern(h, w, x.dtype, x.device))
    return out


def col2im3x3(cols: torch.Tensor, shape: tuple[int, int, int, int]) -> torch.Tensor:
    """Adjoint of im2col3x3: sum each patch entry back onto its input pixel (exact integer sums)."""
    c, b, h, w = shape
    v = cols.view(3, 3, c, b, h, w)
    out = torch.zeros((c, b, h + 2, w + 2), dtype=cols.dtype, device=cols.device)
    for ky in range(3):
        for kx in range(3):
            out[:, :, ky : ky + h, kx : kx + w] += v[ky, kx]
    return out[:, :, 1 : h + 1, 1 : w + 1]


@dataclass(frozen=True)
class ComputeWeights:
    """GEMM operands from the master parameters (float64 holding integers): Q12 weights and biases
    at accumulator scale. w1/w2 are in GEMM layout [9*C_in, C_out]; w1t4/w2t4 = [4 * w^T | 1]."""

    w1: torch.Tensor
    w1t4: torch.Tensor
    b1: torch.Tensor
    w2: torch.Tensor
    w2t4: torch.Tensor
    b2: torch.Tensor
    wh: torch.Tensor  # [F, 3] or [F, 6] (class head, then direction head)
    bh: torch.Tensor


def compute_weights(params: Params, config: ModelConfig) -> ComputeWeights:
    def w(t: torch.Tensor) -> torch.Tensor:
        return clamp_bits(shift_round(t, FRAC_MASTER - FRAC_W), W_BITS).to(torch.float64)

    def bias(t: torch.Tensor, frac: int) -> torch.Tensor:
        return shift_round(t, FRAC_MASTER - frac).to(torch.float64)

    wh, bh = params["head.weight"], params["head.bias"]
    if config.direction:
        wh = torch.cat([wh, params["direction.weight"]], dim=1)
        bh = torch.cat([bh, params["direction.bias"]])

    def gemm4(w: torch.Tensor) -> torch.Tensor:
        return torch.cat(
            [4.0 * w.t(), torch.ones((w.shape[1], 1), dtype=w.dtype, device=w.device)], dim=1
        )

    w1, w2 = w(params["conv1.weight"]), w(params["conv2.weight"])
    return ComputeWeights(
        w1=w1,
        w1t4=gemm4(w1),
        b1=bias(params["conv1.bias"], ACC1_FRAC),
        w2=w2,
        w2t4=gemm4(w2),
        b2=bias(params["conv2.bias"], ACC2_FRAC),
        wh=w(wh),
        bh=bias(bh, ACC2_FRAC),
    )


@dataclass(frozen=True)
class Activations:
    """What the backward pass needs from the forward pass, plus the outputs."""

    col1: torch.Tensor  # [27 + 1, B*S*S] Q7 (last row: tie-break)
    index1: torch.Tensor  # [8, B, S/2, S/2] flat index of each pool window's winner
    keep1: torch.Tensor  # [8, B, S/2, S/2] the window's maximum is positive (ReLU passes)
    col2: torch.Tensor  # [72 + 1, B*(S/2)^2] Q10
    index2: torch.Tensor
    keep2: torch.Tensor
    feats: torch.Tensor  # [B, F] Q10, F in (c, h, w) order
    logits: torch.Tensor  # [B, 3] Q16 int64
    direction: torch.Tensor | None  # [B, 3] Q16 int64


def images_to_fixed(images: torch.Tensor) -> torch.Tensor:
    """uint8 [B, H, W, 3] -> centred Q7 (pixel - 128) as float64 [3, B, H, W]."""
    if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[-1] != 3:
        raise ValueError(
            f"images must be uint8 [B, H, W, 3], got {images.dtype} {tuple(images.shape)}"
        )
    return images.permute(3, 0, 1, 2).to(torch.float64) - 128.0


def _conv_pool_relu(
    x: torch.Tensor, wt4: torch.Tensor, bias: torch.Tensor, x_bound: int, shift: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """conv3x3 + bias, 2x2 max-pool, ReLU, rescale by `shift`, clamp: (activation, patches,
    index, keep)."""
    c_out, (_, b, h, w) = wt4.shape[0], x.shape
    cols = im2col3x3(x)
    acc4 = _gemm(wt4, cols, 4 * W_MAX, max(x_bound, 3)).view(
        c_out, b, h, w
    )  # 4 * (W x) + tie-break
    m4, index = max_pool2x2_tie_broken(acc4)
    m4 = m4 + 4.0 * bias.view(c_out, 1, 1, 1)  # max(4 acc + t) + 4 b = max(4 (acc + b) + t)
    keep = m4 >= 4.0  # the window's maximum floor(m4 / 4) is positive
    # shift_round(relu(floor(m4 / 4)), shift) == shift_round(relu(m4), shift + 2)
    a = clamp_bits(shift_round(m4.clamp(min=0), shift + 2), ACT_BITS)
    return a, cols, index, keep


def forward(cw: ComputeWeights, images: torch.Tensor, config: ModelConfig) -> Activations:
    x = images_to_fixed(images)
    b, s = x.shape[1], config.image_size
    if x.shape[2:] != (s, s):
        raise ValueError(f"images are {tuple(x.shape[2:])}, the model expects {s}x{s}")
    a1, col1, index1, keep1 = _conv_pool_relu(x, cw.w1t4, cw.b1, IN_MAX, ACC1_FRAC - FRAC_ACT)
    a2, col2, index2, keep2 = _conv_pool_relu(a1, cw.w2t4, cw.b2, ACT_MAX, ACC2_FRAC - FRAC_ACT)
    feats = a2.permute(1, 0, 2, 3).reshape(b, config.feat_dim)
    out = shift_round(_gemm(feats, cw.wh, ACT_MAX, W_MAX) + cw.bh, ACC2_FRAC - FRAC_OUT).to(
        torch.int64
    )
    logits = clamp_bits(out[:, :NUM_CLASSES], LOGIT_BITS)
    direction = clamp_bits(out[:, NUM_CLASSES:], DIR_BITS) if config.direction else None
    return Activations(col1, index1, keep1, col2, index2, keep2, feats, logits, direction)


def backward(
    cw: ComputeWeights, act: Activations, dout: torch.Tensor, config: ModelConfig
) -> Params:
    """Gradients (Q24 int64) of every parameter from dL/d(head outputs) `dout` [B, 3 or 6] in
    Q28."""
    b, s = act.feats.shape[0], config.image_size
    d = clamp_bits(dout, DOUT_BITS).to(torch.float64)
    dwh = _gemm(act.feats.t(), d, ACT_MAX, DOUT_MAX, FRAC_ACT + FRAC_DOUT - FRAC_MASTER)
    dbh = shift_round(d.sum(dim=0), FRAC_DOUT - FRAC_MASTER)
    dfeat = clamp_bits(
        _gemm(d, cw.wh.t(), DOUT_MAX, W_MAX, FRAC_DOUT + FRAC_W - FRAC_GRAD), GRAD_BITS
    )
    da2 = dfeat.view(b, config.c2, s // 4, s // 4).transpose(0, 1)
    dacc2 = max_unpool2x2(torch.where(act.keep2, da2, 0.0), act.index2, s // 2, s // 2).view(
        config.c2, -1
    )
    dw2t = _gemm(dacc2, act.col2[:-1].t(), GRAD_MAX, ACT_MAX, FRAC_ACT + FRAC_GRAD - FRAC_MASTER)
    db2 = dacc2.sum(dim=1)
    dcol2 = _gemm(cw.w2, dacc2, W_MAX, GRAD_MAX)  # Q36
    da1 = col2im3x3(dcol2, (config.c1, b, s // 2, s // 2))
    da1 = clamp_bits(shift_round(da1, FRAC_W), GRAD_BITS)
    dacc1 = max_unpool2x2(torch.where(act.keep1, da1, 0.0), act.index1, s, s).view(config.c1, -1)
    dw1t = _gemm(dacc1, act.col1[:-1].t(), GRAD_MAX, IN_MAX, FRAC_IN + FRAC_GRAD - FRAC_MASTER)
    db1 = dacc1.sum(dim=1)
    grads = {
        "conv1.weight": dw1t.t(),
        "conv1.bias": db1,
        "conv2.weight": dw2t.t(),
        "conv2.bias": db2,
        "head.weight": dwh[:, :NUM_CLASSES],
        "head.bias": dbh[:NUM_CLASSES],
    }
    if config.direction:
        grads["direction.weight"] = dwh[:, NUM_CLASSES:]
        grads["direction.bias"] = dbh[NUM_CLASSES:]
    return {k: clamp_bits(v.to(torch.int64).contiguous(), STATE_BITS) for k, v in grads.items()}
