"""50 blocks mined in-process on the default training task: the model on chain learns."""

from consensus_kit import small_params

from chain.keys import PrivateKey
from useful_work.evaluate import evaluate_state
from useful_work.specs import TrainSpec


def test_heldout_accuracy_rises_over_fifty_blocks(make_node):
    spec = TrainSpec(units=0, batch_size=32, steps_per_unit=2, lr_micro=50_000)
    params = small_params(default_task=spec, initial_units_per_block=3, spot_checks=2)
    node = make_node(
        params, key=PrivateKey.from_bytes(b"trainer-test-key".ljust(32, b"-"))
    )  # fixed: same units every run
    checkpoints = {}
    for height in range(51):
        if height:
            node.mine(1)
        if height in (0, 25, 50):
            _, state = node.chain.task_state()
            checkpoints[height] = evaluate_state(state, spec, count=512).accuracy
    task = node.chain.state.tasks[node.chain.task_state()[0]]
    assert node.chain.tip.height == 50 and task.units_done >= 50
    # Chance is about 1/3; the states on chain, verified block by block, must have learned. At a
    # constant learning rate accuracy moves a few points between evaluations, so compare to the
    # start.
    assert checkpoints[25] > checkpoints[0] + 0.10, checkpoints
    assert checkpoints[50] > checkpoints[0] + 0.15, checkpoints
