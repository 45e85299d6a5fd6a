"""`pouw task ...`: pay the network to render a dataset or train a model, follow it, download the result.

    pouw task submit render --count N [--image-size S] [scene options] --bounty B [--wait]
    pouw task submit train --steps N [--lr 0.05] [--objective lights|light-direction] --bounty B [--wait]
    pouw task status ID [--follow]   progress, blocks, payout, held-out metrics (training); pending while in the mempool
    pouw task list
    pouw task result ID -o PATH      a model file (train) or a re-rendered, digest-checked dataset (render)

ID is a task id (the submit transaction's id) or a unique prefix of it (at least 4 hex digits).
Options are checked against the task rules before anything is signed or sent; see docs/wallet.md.
"""  # noqa: E501 (printed as is by --help: RawDescriptionHelpFormatter)

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from p2p.cli.exits import handles_user_errors
from p2p.wallet.session import common_options

MIN_ID_PREFIX = 4


def _scene_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("scene family")
    g.add_argument(
        "--image-size",
        type=int,
        default=32,
        help="image side in pixels (render 16 .. 128; train 16 .. 64, a multiple of 4; default 32)",
    )
    g.add_argument(
        "--min-objects", type=int, default=1, help="objects per scene, at least (1 .. 6, default 1)"
    )
    g.add_argument(
        "--max-objects", type=int, default=6, help="objects per scene, at most (1 .. 6, default 6)"
    )
    g.add_argument(
        "--min-lights", type=int, default=1, help="lights per scene, at least (1 .. 3, default 1)"
    )
    g.add_argument(
        "--max-lights", type=int, default=3, help="lights per scene, at most (1 .. 3, default 3)"
    )


def _payment_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("payment")
    g.add_argument(
        "--bounty",
        required=True,
        help="POUW paid to the miners who do the work, shared per unit (escrowed at once)",
    )
    g.add_argument(
        "--fee",
        default=None,
        help="transaction fee in POUW (default: the node's estimate for this transaction)",
    )
    g.add_argument(
        "--from",
        dest="payer",
        default=None,
        metavar="ADDRESS|INDEX",
        help="the wallet's address that pays and owns the task (default: the first that covers "
        "bounty and fee)",
    )
    g.add_argument(
        "-y",
        "--yes",
        action="store_true",
        help="do not ask before sending; allow a fee above 10%% of the bounty or above 1 POUW",
    )
    g.add_argument("--dry-run", action="store_true", help="check and show the task, send nothing")
    g.add_argument(
        "--wait",
        action="store_true",
        help="then follow the task until it is done (as task status --follow)",
    )
    _follow_timing(g)


def _follow_timing(g) -> None:
    g.add_argument(
        "--interval",
        type=float,
        default=1.0,
        metavar="SECONDS",
        help="seconds between polls when following (default 1)",
    )
    g.add_argument(
        "--timeout",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="when following, give up after SECONDS (exit 10; the task goes on; default: no limit)",
    )


def register(sub: argparse._SubParsersAction) -> None:
    task = sub.add_parser(
        "task",
        help="submit paid render/training tasks, follow them, download results",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    tsub = task.add_subparsers(dest="task_command", metavar="TASK_COMMAND", required=True)
    remote = common_options()
    readonly = common_options(wallet=False, password=False)

    submit = tsub.add_parser("submit", help="submit a render or training task with a bounty")
    ssub = submit.add_subparsers(dest="kind", metavar="KIND", required=True)

    r = ssub.add_parser("render", parents=[remote], help="render a labelled dataset")
    r.add_argument("--count", type=int, required=True, help="number of images")
    r.add_argument(
        "--images-per-unit",
        type=int,
        default=None,
        help="images per unit of work, dividing --count (default: the largest divisor of --count "
        "up to 16)",
    )
    _scene_options(r)
    _payment_options(r)
    r.set_defaults(func=handles_user_errors(_cmd_submit))

    t = ssub.add_parser(
        "train", parents=[remote], help="train a model on images rendered on the fly"
    )
    t.add_argument("--steps", type=int, required=True, help="SGD steps in all")
    t.add_argument(
        "--steps-per-unit",
        type=int,
        default=None,
        help="SGD steps per unit of work, dividing --steps (default 2, or 1 for odd --steps)",
    )
    t.add_argument("--lr", default="0.05", help="learning rate, up to 6 decimals (default 0.05)")
    t.add_argument("--momentum", default="0.9", help="SGD momentum, 0 .. 0.999 (default 0.9)")
    t.add_argument(
        "--batch-size", type=int, default=32, help="images per step, 1 .. 256 (default 32)"
    )
    t.add_argument(
        "--objective",
        default="lights",
        help="lights (count the lights) or light-direction (count and dominant direction)",
    )
    t.add_argument("--arch", default="cnn-small", help="architecture preset (cnn-small)")
    t.add_argument("--seed", type=int, default=0, help="varies the initial weights (default 0)")
    _scene_options(t)
    _payment_options(t)
    t.set_defaults(func=handles_user_errors(_cmd_submit))

    s = tsub.add_parser(
        "status", parents=[readonly], help="progress, blocks, payout and held-out metrics of a task"
    )
    s.add_argument(
        "task_id",
        metavar="ID",
        help="task id (as `task submit` printed it) or a unique prefix of it",
    )
    s.add_argument(
        "--no-metrics",
        action="store_true",
        help="skip the held-out metrics (the node computes them on request)",
    )
    s.add_argument(
        "-f",
        "--follow",
        action="store_true",
        help="follow the task until it is done: a progress bar in units, blocks and held-out "
        "accuracy (Ctrl-C stops following)",
    )
    _follow_timing(s)
    s.set_defaults(func=handles_user_errors(_cmd_status))

    ls = tsub.add_parser("list", parents=[readonly], help="the tasks on the ledger")
    ls.set_defaults(func=handles_user_errors(_cmd_list))

    res = tsub.add_parser(
        "result",
        parents=[readonly],
        help="download a task's result: a model file or a checked dataset",
    )
    res.add_argument("task_id", metavar="ID", help="task id or a unique prefix of it")
    res.add_argument(
        "-o",
        "--output",
        required=True,
        metavar="PATH",
        help="train: the model file to write (e.g. model.pt); render: the directory for "
        "dataset.npz and labels.json",
    )
    res.add_argument(
        "--partial", action="store_true", help="the result so far of a task that is not complete"
    )
    res.add_argument(
        "--device", default="cpu", help="where a dataset is re-rendered (cpu or cuda; default cpu)"
    )
    res.add_argument(
        "--no-eval", action="store_true", help="train: do not score the model on the held-out set"
    )
    res.set_defaults(func=handles_user_errors(_cmd_result))


def _task_id(text: str) -> str:
    """The id as typed: 64 hex digits or a prefix of at least 4 (the node resolves a prefix)."""
    from p2p.wallet.errors import UserError

    t = text.strip().lower()
    if not MIN_ID_PREFIX <= len(t) <= 64 or any(c not in "0123456789abcdef" for c in t):
        raise UserError(
            f"task id {text!r}: expected 64 hex digits (the txid `pouw task submit` printed) "
            f"or a unique prefix of at least {MIN_ID_PREFIX}"
        )
    return t


def resolve_task(node, text: str) -> dict:
    """The node's record of the task with this id or unique id prefix (pending ones included)."""
    from p2p.wallet.errors import NodeError, NotFound, UserError

    ident = _task_id(text)
    try:
        return node.task(ident)
    except NotFound:
        what = f"task {ident}" if len(ident) == 64 else f"no task with id prefix {ident}"
        raise NotFound(f"{what}: neither on this node's chain nor in its mempool") from None
    except NodeError as exc:
        if exc.status == 400 and "ambiguous" in exc.detail:
            raise UserError(f"{exc.detail}; type more digits") from None
        raise


def _progress(args: argparse.Namespace):
    return None if args.json else (lambda msg: print(msg, file=sys.stderr, flush=True))


# --- submit ---------------------------------------------------------------------------------------


def _build_spec(args: argparse.Namespace):
    from p2p.wallet.task_options import render_spec, train_spec
    from useful_work.specs import SceneSettings

    scene = SceneSettings(
        args.image_size, args.min_objects, args.max_objects, args.min_lights, args.max_lights
    )
    if args.kind == "render":
        return render_spec(args.count, args.images_per_unit, scene)
    return train_spec(
        args.steps,
        args.steps_per_unit,
        args.lr,
        args.momentum,
        args.batch_size,
        args.objective,
        args.arch,
        args.seed,
        scene,
    )


def _cmd_submit(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from chain.tx import make_submit_task
    from p2p.cli.wallet import _resolve_payer
    from p2p.wallet.amounts import format_amount
    from p2p.wallet.errors import BadTaskSpec
    from p2p.wallet.session import (
        amount_json,
        client,
        emit,
        load_wallet,
        parse_amount_arg,
        pay_and_send,
    )
    from p2p.wallet.task_options import SMALLER_UNITS, describe_spec, market_terms, option_hint
    from useful_work.specs import TaskSpecError, encode_spec

    try:
        spec = _build_spec(args)
        spec_bytes = encode_spec(spec)
    except TaskSpecError as exc:
        raise BadTaskSpec(f"task spec out of range: {exc}{option_hint(exc)}") from None
    bounty = parse_amount_arg(args.bounty, "--bounty", allow_zero=False)
    if args.fee is not None:
        parse_amount_arg(args.fee, "--fee")
    entry = load_wallet(args)  # a missing wallet is reported before anything else
    payer = _resolve_payer(args, entry)
    node = client(args)
    terms = market_terms(spec, node.params())
    if terms.over_limit:
        raise BadTaskSpec(
            f"task spec out of range: unit cost {terms.unit_cost:,} operations exceeds this "
            f"network's limit of {terms.max_unit_cost:,} (max_unit_cost); make units smaller "
            f"({SMALLER_UNITS[spec.kind]})"
        )
    if bounty < terms.min_bounty:
        raise BadTaskSpec(
            f"task spec out of range: --bounty {format_amount(bounty)} POUW is below this "
            f"network's minimum of {format_amount(terms.unit_price)} per unit, "
            f"{format_amount(terms.min_bounty)} POUW for {spec.units_total} units (unit cost "
            f"{terms.unit_cost:,} operations)"
        )

    def build(key, chain_id, nonce, fee):
        return make_submit_task(key, chain_id, nonce, fee, spec_bytes, bounty)

    summary = {
        "kind": spec.kind,
        "spec": {"kind": spec.kind, **asdict(spec)},
        "units": spec.units_total,
        "bounty": amount_json(bounty),
        "per_unit": amount_json(bounty // spec.units_total),
        "unit_cost": terms.unit_cost,
        "max_unit_cost": terms.max_unit_cost,
        "min_bounty": amount_json(terms.min_bounty),
    }
    limit = f" (limit {terms.max_unit_cost:,})" if terms.max_unit_cost is not None else ""
    cost_line = (
        f"unit cost {terms.unit_cost:,} operations{limit}, minimum bounty "
        f"{format_amount(terms.min_bounty)} POUW ({format_amount(terms.unit_price)} per unit)"
    )
    if args.dry_run:
        fee_text = (
            f"fee {format_amount(parse_amount_arg(args.fee, '--fee'))}"
            if args.fee is not None
            else "fee: the node's estimate"
        )
        emit(
            args,
            {
                **summary,
                "fee": amount_json(parse_amount_arg(args.fee, "--fee"))
                if args.fee is not None
                else None,
                "sent": False,
            },
            f"{describe_spec(spec)}\n{cost_line}\nbounty {format_amount(bounty)} POUW (about "
            f"{format_amount(bounty // spec.units_total)} per unit), {fee_text}: not sent "
            "(--dry-run)",
        )
        return 0
    pay, sent = pay_and_send(
        args,
        node,
        entry,
        bounty,
        build,
        payer,
        lambda pay: [
            f"submit: {describe_spec(spec)}",
            cost_line,
            f"bounty {format_amount(bounty)} POUW (about "
            f"{format_amount(bounty // spec.units_total)} per unit), escrowed at once",
            f"from {pay.address} (address {pay.index} of wallet {entry.name!r}), which owns the "
            "task",
        ],
        what="the bounty",
    )
    task_id = sent.tx.txid.hex()
    data = {
        **summary,
        "fee": amount_json(pay.fee),
        "task_id": task_id,
        "txid": task_id,
        "owner": pay.address,
        "nonce": sent.nonce,
        "sent": True,
    }
    text = (
        f"submitted: {describe_spec(spec)}\n{cost_line}\nbounty {format_amount(bounty)} POUW, fee "
        f"{format_amount(pay.fee)}\ntask id {task_id}\nfollow it with: pouw task status "
        f"{task_id[:12]} --follow"
    )
    if not args.wait:
        emit(args, data, text)
        return 0
    if not args.json:
        print(text, flush=True)
    final, lines = _follow_and_describe(args, node, task_id)
    emit(args, {**data, "final": final}, "\n".join(lines))
    return 0


# --- status, list ---------------------------------------------------------------------------------


def _pct(done: int, total: int) -> str:
    return f"{min(done, total) * 100 // total}%" if total else "open-ended"


def _follow_and_describe(args: argparse.Namespace, node, task_id: str) -> tuple[dict, list[str]]:
    from p2p.wallet.task_follow import follow_task

    follow_task(
        node,
        task_id,
        interval=max(0.2, args.interval),
        timeout=args.timeout,
        metrics=not getattr(args, "no_metrics", False),
        quiet=args.json,
    )
    return task_report(node, node.task(task_id), metrics=not getattr(args, "no_metrics", False))


def task_report(node, task: dict, metrics: bool = True) -> tuple[dict, list[str]]:
    """(JSON data, text lines) of a task record from the node, with held-out metrics of that very
    state."""
    from p2p.wallet.amounts import format_amount
    from p2p.wallet.errors import NodeError, NotFound, NotReady
    from p2p.wallet.session import amount_json
    from p2p.wallet.task_options import describe_spec
    from useful_work.specs import parse_spec

    task_id = task["task_id"]
    spec = parse_spec(bytes.fromhex(task["spec"]))
    held = None
    if spec.kind == "train" and metrics and task["status"] != "pending":
        try:
            held = node.task_metrics(task_id, state=task["state_hash"]).get("heldout")
        except (NotFound, NotReady, NodeError):
            held = None
    total, done = task["units_total"], task["units_done"]
    data = {
        "task_id": task_id,
        "kind": task["kind"],
        "status": task["status"],
        "active": task["active"],
        "owner": task["owner"],
        "spec": {"kind": spec.kind, **{k: getattr(spec, k) for k in spec.__dataclass_fields__}},
        "units_done": done,
        "units_total": total,
        "blocks": task.get("blocks", 0),
        "bounty": amount_json(task["bounty"]),
        "paid": amount_json(task["paid"]),
        "created_height": task["created_height"],
        "completed_height": task["completed_height"] or None,
        "state_hash": task["state_hash"],
        "state": task.get("state"),
        "heldout": held,
    }
    lines = [f"task {task_id}", f"  {describe_spec(spec)}"]
    if task["status"] == "pending":
        data["fee"] = amount_json(task.get("fee", 0))
        lines += [
            "  status   pending: its transaction is in the node's mempool, waiting for a block",
            f"  progress 0 of {total or 'open-ended'} units",
            f"  payment  bounty {format_amount(task['bounty'])} POUW (escrowed once mined), fee "
            f"{format_amount(task.get('fee', 0))} POUW",
            f"  owner    {task['owner']}",
        ]
        return data, lines
    where = (
        f"done at height {task['completed_height']}"
        if task["status"] == "done"
        else ("open, being worked on now" if task["active"] else "open, queued")
    )
    blocks = task.get("blocks", 0)
    lines += [
        f"  status   {where}",
        f"  progress {min(done, total) if total else done} of {total or 'open-ended'} units "
        f"({_pct(done, total)}), {blocks} block{'s' if blocks != 1 else ''}"
        + (
            f" (+{done - total} extra units carried by the last block)"
            if total and done > total
            else ""
        ),
        f"  payment  bounty {format_amount(task['bounty'])} POUW, paid so far "
        f"{format_amount(task['paid'])} POUW",
        f"  owner    {task['owner']}, created at height {task['created_height']}",
    ]
    audit = task.get("audit")
    if audit is not None:
        data["audit"] = audit
        lines.append("  audit    " + audit_line(audit))
    if held:
        line = (
            f"  held-out {held['images']} images: accuracy {held['accuracy']:.1%} (chain's "
            f"fixed-point model), {held['exported_accuracy']:.1%} (exported PyTorch model), loss "
            f"{held['loss']:.3f}, step {held['step']}"
        )
        if held.get("direction_error_deg") is not None:
            line += f", direction error {held['direction_error_deg']:.1f} deg"
        lines.append(line)
    return data, lines


def audit_line(audit: dict) -> str:
    """Whether this node replayed every unit of the task's blocks, and what fraud proofs rolled
    back."""
    if not audit["auditing"]:
        text = (
            "this node does not audit (pouw node --audit): only the spot checks vouch for these "
            "blocks"
        )
    elif audit["fully_audited"]:
        text = f"every unit of all {audit['blocks']} blocks replayed by this node and reproduced"
    else:
        text = (
            f"{audit['audited_blocks']} of {audit['blocks']} blocks fully replayed by this node "
            "(not all audited)"
        )
    if audit["rolled_back_blocks"]:
        n = audit["rolled_back_blocks"]
        text += (
            f"; fraud proofs rolled back {n} block{'s' if n != 1 else ''} of this task (their "
            "units were redone)"
        )
    return text


def _cmd_status(args: argparse.Namespace) -> int:
    from p2p.wallet.session import client, emit

    node = client(args)
    task = resolve_task(node, args.task_id)
    if args.follow and task["status"] != "done":
        data, lines = _follow_and_describe(args, node, task["task_id"])
    else:
        data, lines = task_report(node, task, metrics=not args.no_metrics)
    emit(args, data, "\n".join(lines))
    return 0


def _cmd_list(args: argparse.Namespace) -> int:
    from p2p.wallet.amounts import format_amount
    from p2p.wallet.session import client, emit

    answer = client(args).tasks()
    tasks = answer["tasks"] + answer.get("pending", [])
    lines = [f"{'task id':64s}  {'kind':6s} {'status':7s} {'units':>15s}  bounty"]
    for t in tasks:
        units = f"{t['units_done']}/{t['units_total'] or '-'}"
        lines.append(
            f"{t['task_id']}  {t['kind']:6s} {t['status']:7s} {units:>15s}  "
            f"{format_amount(t['bounty'])}"
            + ("  (default)" if t["default"] else "")
            + ("  *active" if t["active"] else "")
        )
    emit(args, {"tasks": answer["tasks"], "pending": answer.get("pending", [])}, "\n".join(lines))
    return 0


# --- result ---------------------------------------------------------------------------------------


def _not_rolled_back(node, task_id: str, state_hash: str, files: list) -> None:
    """Refuse a downloaded result that the chain no longer holds (a fraud proof rolled it back
    meanwhile): the files written are removed."""
    from p2p.wallet.errors import NotReady

    now = node.task(task_id)
    if now["state_hash"] != state_hash:
        for f in files:
            Path(f).unlink(missing_ok=True)
        raise NotReady(
            f"task {task_id}: the downloaded result (state {state_hash[:16]}) is no longer the "
            f"chain's (now {now['state_hash'][:16]}, {now['status']}): a fraud proof rolled it "
            "back; nothing is handed over"
        )


def _cmd_result(args: argparse.Namespace) -> int:
    from p2p.wallet.session import client, emit
    from p2p.wallet.task_results import download_model, download_render_dataset
    from useful_work.specs import TrainSpec, parse_spec

    node = client(args)
    task = resolve_task(node, args.task_id)
    task_id = task["task_id"]
    spec = parse_spec(bytes.fromhex(task["spec"]))
    if task["status"] == "pending":
        from p2p.wallet.errors import NotReady

        raise NotReady(
            f"task {task_id} is pending: its transaction is in the mempool, not yet in a block; "
            f"follow it with: pouw task status {task_id[:12]} --follow"
        )
    audit = task.get("audit") or {}
    if task["status"] == "open" and audit.get("rolled_back_blocks") and not args.partial:
        from p2p.wallet.errors import NotReady

        raise NotReady(
            f"task {task_id}: a fraud proof rolled back {audit['rolled_back_blocks']} of its "
            f"blocks; the units are being redone ({task['units_done']} of {task['units_total']} "
            f"now); follow it with: pouw task status {task_id[:12]} --follow"
        )
    if spec.kind == "render":
        r = download_render_dataset(
            node, task_id, args.output, args.partial, args.device, _progress(args)
        )
        if not args.partial:
            _not_rolled_back(
                node,
                task_id,
                r.state_hash,
                [r.directory / "dataset.npz", r.directory / "labels.json"],
            )
        data = {
            "task_id": task_id,
            "kind": "render",
            "directory": str(r.directory),
            "units": r.units,
            "images": r.images,
            "units_on_chain": r.units_on_chain,
            "blocks": r.blocks,
            "state_hash": r.state_hash,
            "verified": True,
            "fully_audited": audit.get("fully_audited", False),
            "files": [str(r.directory / "dataset.npz"), str(r.directory / "labels.json")],
        }
        extra = (
            (
                f"\n(the last block did {r.units_on_chain - r.units} units more than the task "
                "asked for; they count in the chain of digests checked, but are not in the "
                "dataset)"
            )
            if r.units_on_chain > r.units
            else ""
        )
        emit(
            args,
            data,
            f"wrote {r.images} images ({r.units} units from {r.blocks} "
            f"block{'s' if r.blocks != 1 else ''}) to {r.directory}/dataset.npz and "
            "labels.json\nevery unit re-rendered here from the chain's seeds matches the chain's "
            f"digest{extra}",
        )
        return 0
    assert isinstance(spec, TrainSpec)  # parse_spec gives one of the two kinds
    model = download_model(
        node, task_id, args.output, args.partial, not args.no_eval, _progress(args)
    )
    if not args.partial:
        _not_rolled_back(node, task_id, model.state_hash, [model.path])
    data = {
        "task_id": task_id,
        "kind": "train",
        "path": str(model.path),
        "step": model.step,
        "state_hash": model.state_hash,
        "height": model.height,
        "units_done": model.units_done,
        "heldout": model.metrics,
        "node_heldout": model.node_metrics,
        "verified": True,
        "fully_audited": audit.get("fully_audited", False),
    }
    at = (
        f", the task's state at height {model.height} ({model.units_done} units)"
        if model.height is not None and args.partial
        else ""
    )
    lines = [
        f"wrote {model.path}: {spec.arch} after {model.step} SGD steps{at} (state "
        f"{model.state_hash[:16]}, checked against the chain)",
        "load it with torch.load(path, weights_only=True), or "
        "useful_work.export_model.load_model; see docs/wallet.md",
    ]
    if model.metrics:
        line = (
            f"held-out accuracy of this file: {model.metrics['accuracy']:.1%} on "
            f"{model.metrics['images']} images"
        )
        if model.node_metrics:
            line += (
                f" (the node reports {model.node_metrics['accuracy']:.1%} for the chain's model, "
                f"{model.node_metrics['exported_accuracy']:.1%} for its export, of the same state)"
            )
        lines.append(line)
    emit(args, data, "\n".join(lines))
    return 0
