"""The fixed-point trainer: exact forward/backward against float autograd, determinism, state bytes,
golden hashes, learning, and the exported float model's agreement."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from useful_work import model as M
from useful_work.exact import ExactnessError
from useful_work.hashing import tagged_hash
from useful_work.prng import Prng
from useful_work.specs import TrainSpec
from useful_work.tasks import make_task
from useful_work.trace import state_hash
from useful_work.train_task import TrainTask, step_seed
from useful_work.trainer import (
    DIR_LOSS_WEIGHT,
    Hyper,
    decode_state,
    encode_state,
    initial_train_state,
    output_grads,
    train_step,
)


def random_batch(seed: bytes, b: int, size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """PRNG images (smoothed noise, so pooling sees both ties and distinct values) and labels."""
    prng = Prng(seed)
    coarse = prng.below("images", b * (size // 4) * (size // 4) * 3, 256).view(
        b, size // 4, size // 4, 3
    )
    images = coarse.repeat_interleave(4, 1).repeat_interleave(4, 2)
    images = (images + prng.below("noise", b * size * size * 3, 24).view(b, size, size, 3)).clamp(
        0, 255
    )
    counts = prng.integers("counts", b, 1, 3)
    v = prng.integers("dirs", b * 3, -16384, 16384).view(b, 3)
    return images.to(torch.uint8), counts, v


def ste_round(v: torch.Tensor) -> torch.Tensor:
    """floor(v + 1/2) forward (shift_round's rule), identity backward."""
    return v + (torch.floor(v + 0.5) - v).detach()


def float_twin_grads(params: M.Params, config: M.ModelConfig, images, counts, dirs):
    """Float64 autograd of the same fixed-point forward (rounding passed straight through)."""
    cw = M.compute_weights(params, config)
    w1 = (
        (cw.w1 / 2**M.FRAC_W)
        .reshape(3, 3, config.c_in, config.c1)
        .permute(3, 2, 0, 1)
        .clone()
        .requires_grad_()
    )
    w2 = (
        (cw.w2 / 2**M.FRAC_W)
        .reshape(3, 3, config.c1, config.c2)
        .permute(3, 2, 0, 1)
        .clone()
        .requires_grad_()
    )
    b1 = (cw.b1 / 2**M.ACC1_FRAC).clone().requires_grad_()
    b2 = (cw.b2 / 2**M.ACC2_FRAC).clone().requires_grad_()
    wh = (cw.wh / 2**M.FRAC_W).clone().requires_grad_()
    bh = (cw.bh / 2**M.ACC2_FRAC).clone().requires_grad_()
    x = (images.permute(0, 3, 1, 2).to(torch.float64) - 128) / 128
    a1 = (
        ste_round(F.relu(F.max_pool2d(F.conv2d(x, w1, b1, padding=1), 2)) * 2**M.FRAC_ACT)
        / 2**M.FRAC_ACT
    )
    a2 = (
        ste_round(F.relu(F.max_pool2d(F.conv2d(a1, w2, b2, padding=1), 2)) * 2**M.FRAC_ACT)
        / 2**M.FRAC_ACT
    )
    assert a1.abs().max() < 2 ** (M.ACT_BITS - 1 - M.FRAC_ACT)  # no saturation in this test
    out = ste_round((a2.flatten(1) @ wh + bh) * 2**M.FRAC_OUT) / 2**M.FRAC_OUT
    logits = out[:, :3]
    loss = F.cross_entropy(logits, counts - 1)
    if config.direction:
        loss = loss + DIR_LOSS_WEIGHT * 0.5 * (out[:, 3:] - dirs / 2**14).pow(2).sum(1).mean()
    loss.backward()
    conv = lambda g: g.permute(2, 3, 1, 0).reshape(-1, g.shape[0])  # noqa: E731  torch layout -> GEMM layout
    grads = {
        "conv1.weight": conv(w1.grad),
        "conv1.bias": b1.grad,
        "conv2.weight": conv(w2.grad),
        "conv2.bias": b2.grad,
        "head.weight": wh.grad[:, :3],
        "head.bias": bh.grad[:3],
    }
    if config.direction:
        grads["direction.weight"] = wh.grad[:, 3:]
        grads["direction.bias"] = bh.grad[3:]
    return out.detach(), grads


@pytest.mark.parametrize("direction", [False, True])
def test_forward_is_exact_and_backward_matches_autograd(direction: bool) -> None:
    config = M.ModelConfig(image_size=16, direction=direction)
    params = M.init_params(config, tagged_hash("test", b"grad"))
    images, counts, dirs = random_batch(b"\x07" * 32, 6, 16)
    cw = M.compute_weights(params, config)
    act = M.forward(cw, images, config)
    dout, _ = output_grads(act.logits, act.direction, counts, dirs if direction else None)
    grads = M.backward(cw, act, dout, config)

    out, ref = float_twin_grads(params, config, images, counts, dirs)
    # The float twin reproduces the integer forward pass exactly (every value is a dyadic rational).
    assert torch.equal(act.logits, (out[:, :3] * 2**M.FRAC_OUT).to(torch.int64))
    if direction:
        assert torch.equal(act.direction, (out[:, 3:] * 2**M.FRAC_OUT).to(torch.int64))
    for name, g in grads.items():
        got = g.to(torch.float64) / 2**M.FRAC_MASTER
        want = ref[name]
        scale = float(want.abs().max())
        assert scale > 0, name
        err = float((got - want).abs().max())
        # Rounding of probabilities (Q20), output gradients (Q28) and activation gradients (Q24):
        # measured about 1e-5 of the gradient's scale.
        assert err <= 1e-4 * scale + 1e-9, (name, err, scale)


# ---- integer building blocks ----


def test_pool_routes_like_torch_on_ties() -> None:
    from useful_work.intmath import max_pool2x2_tie_broken, max_unpool2x2, tie_break_pattern

    x = (
        Prng(b"\x01" * 32).integers("pool", 2 * 3 * 8 * 8, -2, 2).view(2, 3, 8, 8).double()
    )  # many ties
    x4 = 4 * x + tie_break_pattern(8, 8, torch.float64, "cpu")
    m4, index = max_pool2x2_tie_broken(x4)
    ref_m, ref_index = F.max_pool2d(x, 2, return_indices=True)
    assert torch.equal(torch.floor(m4 / 4), ref_m)
    assert torch.equal(index, ref_index)
    d = Prng(b"\x02" * 32).integers("g", 2 * 3 * 4 * 4, -9, 9).view(2, 3, 4, 4).double()
    assert torch.equal(
        max_unpool2x2(d, index, 8, 8), F.max_unpool2d(d, ref_index, 2, output_size=(8, 8))
    )


def test_integer_softmax_cross_entropy_and_tables() -> None:
    from useful_work.intmath import PROB_FRAC, exp2_neg_table, ln1p_table, softmax_xent

    z = Prng(b"\x03" * 32).integers("z", 300, -(1 << 21), 1 << 21).view(100, 3)
    y = Prng(b"\x03" * 32).integers("y", 100, 0, 2)
    p, loss = softmax_xent(z, y)
    zf = z.double() / 2**16
    assert (p.double() / 2**PROB_FRAC - F.softmax(zf, 1)).abs().max() < 5e-6
    assert (loss.double() / 2**16 - F.cross_entropy(zf, y, reduction="none")).abs().max() < 2e-5
    tables = repr((exp2_neg_table(), ln1p_table())).encode()
    assert tagged_hash("test-tables", tables).hex()[:16] == GOLDEN_TABLES


def test_hyper_parameters_in_integers() -> None:
    from useful_work.trainer import inv_batch_q

    h = Hyper.from_spec(50_000, 900)
    assert (h.lr_q, h.momentum_q) == (838861, 58982)  # round(0.05 * 2^24), round(0.9 * 2^16)
    assert inv_batch_q(32) == 1 << 19 and inv_batch_q(3) == 5592405


def test_gemm_takes_the_int64_path_past_2_53() -> None:
    prng = Prng(b"\x04" * 32)
    a = prng.integers("a", 4 * 9000, -(1 << 23), 1 << 23).view(4, 9000)
    b = prng.integers("b", 9000 * 3, -(1 << 20), 1 << 20).view(9000, 3)  # 9000 * 2^43 > 2^53
    got = M._gemm(a.double(), b.double(), 1 << 23, 1 << 20, shift=10)
    want = (torch.matmul(a, b) + (1 << 9)) >> 10
    assert got.dtype == torch.float64 and torch.equal(got.to(torch.int64), want)
    with pytest.raises(ExactnessError):
        M._gemm(a.double(), b.double(), 1 << 40, 1 << 30)


# ---- state bytes ----


def test_initial_state_golden_and_description() -> None:
    task = TrainTask(TrainSpec())
    s0 = task.initial_state()
    assert len(s0) == 35852
    assert state_hash(s0).hex() == GOLDEN_INITIAL
    d = task.describe_state(s0)
    assert d["step"] == 0 and d["parameters"] == 4467 and d["state_bytes"] == len(s0)
    direction = TrainTask(TrainSpec(objective="light-direction")).initial_state()
    assert state_hash(direction).hex() == GOLDEN_INITIAL_DIRECTION
    assert TrainTask(TrainSpec(seed=1)).initial_state() != s0
    assert 5 * len(direction) < 400_000  # k + 1 = 5 openings stay far under a 4 MB block


def test_state_roundtrip_and_malformed_states_rejected() -> None:
    task = TrainTask(TrainSpec())
    s0 = task.initial_state()
    assert encode_state(decode_state(s0, task.config), task.config) == s0
    for cut in (0, 3, 19, 20, 21, 25, 40, len(s0) // 2, len(s0) - 1):
        with pytest.raises(ValueError):
            decode_state(s0[:cut], task.config)
    with pytest.raises(ValueError, match="trailing"):
        decode_state(s0 + b"\0", task.config)
    with pytest.raises(ValueError, match="magic"):
        decode_state(b"XXXX" + s0[4:], task.config)
    with pytest.raises(ValueError, match="version"):
        decode_state(s0[:4] + b"\x09\x00" + s0[6:], task.config)
    with pytest.raises(ValueError, match="objective"):
        decode_state(s0, TrainTask(TrainSpec(objective="light-direction")).config)
    with pytest.raises(ValueError, match="image size"):
        decode_state(s0, dataclasses.replace(task.config, image_size=16))
    with pytest.raises(ValueError, match="dtype"):
        decode_state(s0[:20] + b"\x02" + s0[21:], task.config)
    with pytest.raises(ValueError, match="shape"):
        decode_state(s0[:22] + b"\x1c" + s0[23:], task.config)
    with pytest.raises(ValueError):
        task.run_unit(s0[:-4], UNIT_SEED)
    with pytest.raises(ValueError):
        task.run_unit(s0, b"short seed")


# ---- determinism and golden work ----

SMALL = TrainSpec(batch_size=8, steps_per_unit=2, image_size=16, objective="light-direction")
UNIT_SEED = tagged_hash("test-train", b"unit")


def run_with_threads(task: TrainTask, state: bytes, threads: int) -> tuple[bytes, bytes]:
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return task.run_unit(state, UNIT_SEED)
    finally:
        torch.set_num_threads(old)


@pytest.mark.parametrize("spec", [SMALL, TrainSpec()], ids=["small-direction", "default"])
def test_unit_identical_across_threads_and_gemm_splits(spec: TrainSpec) -> None:
    task = TrainTask(spec)
    s0 = task.initial_state()
    want = run_with_threads(task, s0, 1)
    assert run_with_threads(task, s0, 2) == want
    for max_chunk, rev in ((5, True), (64, False), (1000, True)):
        with M.gemm_split(max_chunk=max_chunk, reverse_chunks=rev):
            assert task.run_unit(s0, UNIT_SEED) == want, (max_chunk, rev)


def test_trainer_golden_on_prng_batches() -> None:
    """Pins the trainer's arithmetic alone (inputs from the PRNG, not the renderer)."""
    config = M.ModelConfig(image_size=16, direction=True)
    state = initial_train_state(M.init_params(config, tagged_hash("test", b"golden")))
    hyper = Hyper.from_spec(50_000, 900)
    losses = []
    for i in range(3):
        images, counts, dirs = random_batch(bytes([i]) * 32, 8, 16)
        state, stats = train_step(state, images, counts, dirs, config, hyper)
        losses.append((stats.loss_q, stats.dir_loss_q, stats.correct))
    assert state.step == 3
    assert losses == GOLDEN_PRNG_LOSSES
    assert state_hash(encode_state(state, config)).hex() == GOLDEN_PRNG_STATE


def test_unit_golden_and_verification() -> None:
    """Pins one default unit (renderer + trainer); re-execution reproduces its leaf, tampering is
    caught."""
    from useful_work.trace import Leaf
    from useful_work.verify import verify_unit

    task = make_task(TrainSpec())
    s0 = task.initial_state()
    out, digest = task.run_unit(s0, UNIT_SEED)
    assert (state_hash(out).hex(), digest.hex()) == GOLDEN_UNIT
    assert task.describe_state(out)["step"] == 2
    leaf = Leaf(state_hash(s0), state_hash(out), digest, bytes(32))
    assert verify_unit(task, s0, UNIT_SEED, leaf).ok
    assert not verify_unit(
        task, s0, UNIT_SEED, Leaf(leaf.input_hash, leaf.output_hash, bytes(32), bytes(32))
    ).ok
    other_seed = tagged_hash("test-train", b"other")
    assert not verify_unit(task, s0, other_seed, leaf).ok
    assert task.run_unit(s0, other_seed)[1] != digest


def test_step_seeds_are_distinct() -> None:
    seeds = {step_seed(UNIT_SEED, s) for s in range(64)}
    assert len(seeds) == 64


def test_large_image_and_batch_shapes() -> None:
    config = M.ModelConfig(image_size=64, direction=True)
    params = M.init_params(config, tagged_hash("test", b"big"))
    images, counts, dirs = random_batch(b"\x05" * 32, 3, 64)
    state, stats = train_step(
        initial_train_state(params), images, counts, dirs, config, Hyper.from_spec(10_000, 0)
    )
    assert state.step == 1 and stats.logits.shape == (3, 3) and stats.direction.shape == (3, 3)


# ---- learning and export ----


@pytest.fixture(scope="module")
def trained() -> tuple[TrainTask, bytes, bytes]:
    """40 exact SGD steps at the default spec (about two seconds)."""
    task = TrainTask(TrainSpec())
    s0 = task.initial_state()
    s = s0
    for u in range(20):
        s, _ = task.run_unit(s, tagged_hash("test-train", b"fixture", bytes([u])))
    return task, s0, s


def test_short_training_lowers_heldout_loss(trained) -> None:
    from useful_work.evaluate import evaluate_state

    task, s0, s = trained
    before = evaluate_state(s0, task.spec, 256)
    after = evaluate_state(s, task.spec, 256)
    assert after.loss < before.loss - 0.1, (before.loss, after.loss)


def test_exported_model_agrees_with_fixed_point(trained, tmp_path) -> None:
    from useful_work.evaluate import evaluate_fixed, heldout_set
    from useful_work.export_model import export_model, load_model, predict_exported

    task, _, s = trained
    path = export_model(s, task.spec, tmp_path / "model.pt")
    net = load_model(path)
    data = heldout_set(task.spec.scene, 512)
    fixed = evaluate_fixed(decode_state(s, task.config).params, task.config, data)
    counts, _ = predict_exported(net, data.images)
    assert float((counts == fixed.predictions).double().mean()) >= 0.99
    # The docstring's plain-PyTorch rebuild loads the same file.
    ck = torch.load(path, weights_only=True)
    plain = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.MaxPool2d(2), torch.nn.ReLU(),
        torch.nn.Conv2d(8, 16, 3, padding=1), torch.nn.MaxPool2d(2), torch.nn.ReLU(),
        torch.nn.Flatten(), torch.nn.Linear(ck["config"]["feat_dim"], ck["config"]["outputs"]),
    )  # fmt: skip
    plain.load_state_dict(ck["state_dict"])
    with torch.no_grad():
        out = plain.eval()((data.images.permute(0, 3, 1, 2).float() - 128) / 128)
    assert torch.equal(out[:, :3].argmax(1) + 1, counts)


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_accuracy_after_long_training() -> None:
    """Both models pass 90% on the held-out set, within a few points of each other (about two
    minutes on an idle core)."""
    from useful_work.compare import train_and_compare

    r = train_and_compare(3000, eval_every=250, progress=False, timing_units=1)
    assert r["exact_accuracy_last_evals"] >= 0.90, r
    assert r["reference_accuracy_last_evals"] >= 0.90, r
    # Iterates at a constant learning rate move by a few points between evaluations.
    assert abs(r["gap_last_evals_points"]) <= 3.0, r


GOLDEN_TABLES = "8c3043ffd6d69a50"
GOLDEN_INITIAL = "9e40ed10abeae6e6f6e584c406a3eb92ea5712b0871de505643646f7775f234a"
GOLDEN_INITIAL_DIRECTION = "2845448990c51bbe45bc8629e9c1edf8bdb95f1cecb62c982f197f6fc55e15f5"
GOLDEN_PRNG_LOSSES = [(557505, 24671, 4), (723328, 22388, 3), (507382, 24677, 5)]
GOLDEN_PRNG_STATE = "73b590ed04a9ceb70c7b3e14029e1a18def8b67d33cb2232d9c091328cfeb1b2"
# Renderer + trainer: changes when either changes their arithmetic.
GOLDEN_UNIT = (
    "512c9727ab762faa689a72f4640fa48e6b02db9652749722784ff94df3998d62",
    "bf52a9ebd1dbfa8d79c81c5ed2b0577ec60629b8ce363fa33b5e40c75f71449a",
)
