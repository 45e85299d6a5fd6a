"""Downloading a task's result from a node and checking it against the chain.

Render task: the node's manifest lists, for every block that worked on the task, the parent
hash, the miner and each unit's digest. The digests are first checked against the task's state
on chain (a render state is a count and a running hash of the digests, so the chain of states
they give must end at the task's state hash, block by block); then every unit is rendered again
here from its chained seed (useful_work.trace: parent, miner, attempt, index, the commitment to the
earlier leaves and the unit's header commitment), and its digest must equal the chain's. Only
then are dataset.npz and labels.json written (via a temporary directory, so a mismatch leaves
nothing behind).

Train task: the final state blob must hash to the task's state hash; it is exported as a plain
PyTorch model file (useful_work.export_model) and, unless asked not to, scored on the held-out
set here, next to the figures the node reports for that same state: a partial download names
the state it took (hash, units done, the height it was read at) and asks the node's metrics of
exactly that state, so the file and the figure next to it never come from two heights.
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from chain.address import AddressError, parse_address
from p2p.wallet.client import NodeClient
from p2p.wallet.errors import NodeError, NotReady, ResultMismatch, UserError
from useful_work.hashing import ZERO_HASH, tagged_hash
from useful_work.specs import RenderSpec, TaskSpec, TaskSpecError, TrainSpec, parse_spec
from useful_work.trace import Leaf, prefix_commitments, state_hash, unit_seed

Progress = Callable[[str], None]


@dataclass(frozen=True)
class ManifestBlock:
    height: int
    block_hash: str
    parent: bytes
    miner: bytes
    attempt: int
    first_unit: int
    leaves: tuple[Leaf, ...]
    output_hash: bytes
    block_state: bytes = ZERO_HASH  # the task's state after the block (the merge of its traces)

    @property
    def digests(self) -> tuple[bytes, ...]:
        return tuple(leaf.digest for leaf in self.leaves)

    @property
    def seeds(self) -> list[bytes]:
        prefixes = prefix_commitments(self.leaves)
        return [
            unit_seed(self.parent, self.miner, self.attempt, u, prefixes[u], leaf.commitment)
            for u, leaf in enumerate(self.leaves)
        ]


@dataclass(frozen=True)
class Manifest:
    task_id: str
    spec: TaskSpec
    units_total: int
    units_done: int
    state_hash: bytes
    status: str
    blocks: tuple[ManifestBlock, ...]

    @property
    def seeds(self) -> list[bytes]:
        return [seed for b in self.blocks for seed in b.seeds]

    @property
    def digests(self) -> list[bytes]:
        return [d for b in self.blocks for d in b.digests]


@dataclass(frozen=True)
class RenderResult:
    directory: Path
    units: int
    images: int
    units_on_chain: int
    blocks: int
    state_hash: str


@dataclass(frozen=True)
class TrainResult:
    path: Path
    step: int
    state_hash: str
    metrics: dict | None = None  # held-out figures of the downloaded file, measured here
    node_metrics: dict | None = None  # what the node reports for the same state
    height: int | None = None  # the chain height at which this was the task's state
    units_done: int | None = None


def _spec_of(task: dict) -> TaskSpec:
    try:
        return parse_spec(bytes.fromhex(task["spec"]))
    except (KeyError, ValueError, TaskSpecError) as exc:
        raise NodeError(
            f"the node's record of task {task.get('task_id')} has no readable spec ({exc})"
        ) from None


def _not_complete(task_id: str, done: int, total: int, what: str) -> NotReady:
    if not total:
        return NotReady(
            f"task {task_id} is the open-ended default task ({done} units so far) and never "
            f"completes; pass --partial for {what}"
        )
    return NotReady(
        f"task {task_id} is not complete ({done} of {total} units); wait, or pass --partial for "
        f"{what}"
    )


def fetch_manifest(node: NodeClient, task_id: str, progress: Progress | None = None) -> Manifest:
    """All pages of the task's manifest, parsed; refetched once if the task moved on meanwhile."""
    for _attempt in range(3):
        pages: list[dict] = []
        offset = 0
        while True:
            page = node.task_manifest(task_id, offset=offset)
            pages.append(page)
            offset += len(page["blocks"])
            if offset >= page["total_blocks"] or not page["blocks"]:
                break
            if progress:
                progress(f"manifest: {offset} of {page['total_blocks']} blocks")
        if len({p["state_hash"] for p in pages}) == 1:
            break
    else:
        raise NotReady(
            f"task {task_id} kept advancing while its manifest was read; try again (or wait until "
            "it is done)"
        )
    head = pages[0]
    try:
        spec = parse_spec(bytes.fromhex(head["spec"]))
        blocks = tuple(
            ManifestBlock(
                height=b["height"],
                block_hash=b["hash"],
                parent=bytes.fromhex(b["parent"]),
                miner=parse_address(b["miner"]),
                attempt=b["attempt"],
                first_unit=b["first_unit"],
                leaves=tuple(Leaf.from_bytes(bytes.fromhex(leaf)) for leaf in b["leaves"]),
                output_hash=bytes.fromhex(b["output_hash"]),
                block_state=bytes.fromhex(b.get("block_state", b["output_hash"])),
            )
            for p in pages
            for b in p["blocks"]
        )
    except (KeyError, ValueError, TypeError, TaskSpecError, AddressError) as exc:
        raise NodeError(f"the node's manifest of task {task_id} is malformed ({exc})") from None
    return Manifest(
        task_id,
        spec,
        head["units_total"],
        head["units_done"],
        bytes.fromhex(head["state_hash"]),
        head["status"],
        blocks,
    )


def check_render_manifest(manifest: Manifest) -> None:
    """The digests must give the task's state on chain, block after block (ResultMismatch
    otherwise). A block's traces (its winner's and share claims') each start from the state
    before the block; their outputs merge (useful_work.merge) into the block's task state."""
    from useful_work.merge import MergeError, merge_states
    from useful_work.render_task import RenderState
    from useful_work.tasks import make_task

    count = sum(len(b.digests) for b in manifest.blocks)
    if count != manifest.units_done:
        raise ResultMismatch(
            f"the manifest lists {count} units, the task record says {manifest.units_done} were "
            "done"
        )
    state = RenderState(0, ZERO_HASH)
    groups: list[list[ManifestBlock]] = []
    for b in manifest.blocks:
        if groups and groups[-1][0].block_hash == b.block_hash:
            groups[-1].append(b)
        else:
            groups.append([b])
    for group in groups:
        start, outputs, counted = state, [], state.units_done
        for b in group:
            if b.first_unit != counted:
                raise ResultMismatch(
                    f"block {b.height}: starts at unit {b.first_unit}, expected {counted}"
                )
            out = start
            for d in b.digests:
                out = RenderState(out.units_done + 1, tagged_hash("render-acc", out.accumulator, d))
            if state_hash(out.to_bytes()) != b.output_hash:
                raise ResultMismatch(
                    f"block {b.height}: its digests do not give the output its trace recorded"
                )
            outputs.append(out.to_bytes())
            counted += len(b.digests)
        counts = [len(b.digests) for b in group]
        try:
            merged = merge_states(make_task(manifest.spec), outputs, counts, counts)
        except MergeError as exc:
            where = f"block {group[0].height}"
            raise ResultMismatch(f"{where}: its traces do not merge ({exc})") from None
        state = RenderState.from_bytes(merged)
        if state_hash(merged) != group[0].block_state:
            raise ResultMismatch(
                f"block {group[0].height}: its digests do not give the task state the block "
                "recorded"
            )
    if manifest.units_done and state_hash(state.to_bytes()) != manifest.state_hash:
        raise ResultMismatch("the manifest's digests do not give the task's state hash on chain")


def download_render_dataset(
    node: NodeClient,
    task_id: str,
    out_dir: str | Path,
    partial: bool = False,
    device: str = "cpu",
    progress: Progress | None = None,
) -> RenderResult:
    from useful_work.export_dataset import DatasetError, export_render_task

    manifest = fetch_manifest(node, task_id, progress)
    spec = manifest.spec
    if not isinstance(spec, RenderSpec):
        raise NodeError(f"task {task_id} is a {spec.kind} task, not a render task")
    if manifest.status != "done" and not partial:
        raise _not_complete(
            task_id, manifest.units_done, manifest.units_total, "the units done so far"
        )
    if manifest.units_done == 0:
        raise NotReady(f"task {task_id} has no units done yet")
    check_render_manifest(manifest)
    # The units the task asked (and paid) for; a last block may carry a few more, which were
    # checked above as part of the chain of states but are not part of the requested dataset.
    keep = (
        min(manifest.units_done, manifest.units_total)
        if manifest.units_total
        else manifest.units_done
    )
    seeds, digests = manifest.seeds[:keep], manifest.digests[:keep]
    out = Path(out_dir)
    tmp = out.parent / f".{out.name}.partial-{secrets.token_hex(4)}"
    if progress:
        progress(
            f"rendering {keep} units ({keep * spec.images_per_unit} images) from the chain's "
            "seeds and checking their digests"
        )
    try:
        export_render_task(tmp, spec, seeds, digests, device)
        out.mkdir(parents=True, exist_ok=True)
        for f in sorted(tmp.iterdir()):
            os.replace(f, out / f.name)
    except DatasetError as exc:
        raise ResultMismatch(f"re-rendered data does not match the chain: {exc}") from None
    except OSError as exc:
        raise UserError(f"-o {out}: cannot write ({exc.strerror or exc})") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return RenderResult(
        out,
        keep,
        keep * spec.images_per_unit,
        manifest.units_done,
        len(manifest.blocks),
        manifest.state_hash.hex(),
    )


def download_model(
    node: NodeClient,
    task_id: str,
    path: str | Path,
    partial: bool = False,
    evaluate: bool = True,
    progress: Progress | None = None,
) -> TrainResult:
    from useful_work.export_model import export_model
    from useful_work.tasks import make_task

    task = node.task(task_id)
    spec = _spec_of(task)
    if not isinstance(spec, TrainSpec):
        raise NodeError(f"task {task_id} is a {spec.kind} task, not a training task")
    if task["status"] != "done" and not partial:
        raise _not_complete(task_id, task["units_done"], task["units_total"], "its current state")
    blob = node.task_result(task_id, partial=partial)
    claimed = blob.headers.get("x-state-hash", "")
    got = state_hash(blob.data)
    if claimed == ZERO_HASH.hex():  # no unit yet: the spec's initial state
        if blob.data != make_task(spec).initial_state():
            raise ResultMismatch("the node sent a state that is not the task's initial state")
    elif got.hex() != claimed:
        raise ResultMismatch(
            f"the state the node sent hashes to {got.hex()}, not the state hash {claimed} it names"
        )
    if task["status"] == "done" and claimed != task["state_hash"]:
        raise ResultMismatch(
            f"the node sent state {claimed}, the finished task's state on chain is "
            f"{task['state_hash']}"
        )
    out = Path(path)
    if out.is_dir() or not out.parent.is_dir():
        raise UserError(f"-o {out}: expected a file name in an existing directory")
    tmp = out.with_name(f".{out.name}.partial-{secrets.token_hex(4)}")
    try:
        export_model(blob.data, spec, tmp)
        os.replace(tmp, out)
    except OSError as exc:
        raise UserError(f"-o {out}: cannot write ({exc.strerror or exc})") from None
    finally:
        tmp.unlink(missing_ok=True)
    from useful_work.train_task import model_config
    from useful_work.trainer import decode_state

    step = decode_state(blob.data, model_config(spec)).step
    height = _int_header(blob.headers, "x-height")
    units_done = _int_header(blob.headers, "x-units-done")
    metrics = node_metrics = None
    if evaluate:
        if progress:
            progress("scoring the downloaded model on the held-out set")
        metrics = evaluate_model_file(out, spec)
        try:  # the node's figures for the state in the file, not for wherever the task is now
            answer = node.task_metrics(task_id, state=claimed)
            node_metrics = answer.get("heldout") if answer.get("state_hash") == claimed else None
        except NodeError:
            node_metrics = None
        if node_metrics is not None and node_metrics.get("step") != step:
            raise ResultMismatch(
                f"the node scored step {node_metrics.get('step')} for state {claimed}, the file "
                f"is at step {step}"
            )
    return TrainResult(out, step, claimed, metrics, node_metrics, height, units_done)


def _int_header(headers: dict[str, str], name: str) -> int | None:
    try:
        return int(headers[name])
    except (KeyError, ValueError):
        return None


def evaluate_model_file(path: Path, spec: TrainSpec) -> dict:
    """Held-out accuracy of an exported model file, loaded as plain PyTorch would load it."""
    from useful_work.evaluate import HELDOUT_COUNT, angular_error_deg, heldout_set
    from useful_work.export_model import load_model, predict_exported

    data = heldout_set(spec.scene, HELDOUT_COUNT)
    counts, direction = predict_exported(load_model(path), data.images)
    correct = int((counts.cpu() == data.counts.cpu()).sum())
    return {
        "images": int(data.counts.numel()),
        "correct": correct,
        "accuracy": correct / int(data.counts.numel()),
        "direction_error_deg": None
        if direction is None
        else round(angular_error_deg(direction, data.dirs), 3),
    }
