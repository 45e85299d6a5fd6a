"""`pouw task ...`: pay the network to render a dataset or train a model, follow it, download the result.

    pouw task submit render --count N [--image-size S] [scene options] --bounty B
    pouw task submit train --steps N [--lr 0.05] [--objective lights|light-direction] --bounty B
    pouw task status ID        progress, blocks, payout, held-out metrics (training)
    pouw task list
    pouw task result ID -o PATH   a model file (train) or a re-rendered, digest-checked dataset (render)

Options are checked against the task rules before anything is signed or sent; see docs/wallet.md.
"""

from __future__ import annotations

import argparse
import sys

from p2p.user_errors import handles_user_errors
from p2p.wallet_common import DEFAULT_FEE, common_options


def _scene_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("scene family")
    g.add_argument("--image-size", type=int, default=32, help="image side in pixels (render 16 .. 128; train 16 .. 64, a multiple of 4; default 32)")
    g.add_argument("--min-objects", type=int, default=1, help="objects per scene, at least (1 .. 6, default 1)")
    g.add_argument("--max-objects", type=int, default=6, help="objects per scene, at most (1 .. 6, default 6)")
    g.add_argument("--min-lights", type=int, default=1, help="lights per scene, at least (1 .. 3, default 1)")
    g.add_argument("--max-lights", type=int, default=3, help="lights per scene, at most (1 .. 3, default 3)")


def _payment_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("payment")
    g.add_argument("--bounty", required=True, help="POUW paid to the miners who do the work, shared per unit (escrowed at once)")
    g.add_argument("--fee", default=DEFAULT_FEE, help=f"transaction fee in POUW (default {DEFAULT_FEE})")
    g.add_argument("--dry-run", action="store_true", help="check and show the task, send nothing")


def register(sub: argparse._SubParsersAction) -> None:
    task = sub.add_parser("task", help="submit paid render/training tasks, follow them, download results",
                          description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    tsub = task.add_subparsers(dest="task_command", metavar="TASK_COMMAND", required=True)
    remote = common_options()
    readonly = common_options(wallet=False, password=False)

    submit = tsub.add_parser("submit", help="submit a render or training task with a bounty")
    ssub = submit.add_subparsers(dest="kind", metavar="KIND", required=True)

    r = ssub.add_parser("render", parents=[remote], help="render a labelled dataset")
    r.add_argument("--count", type=int, required=True, help="number of images")
    r.add_argument("--images-per-unit", type=int, default=None,
                   help="images per unit of work, dividing --count (default: the largest divisor of --count up to 16)")
    _scene_options(r)
    _payment_options(r)
    r.set_defaults(func=handles_user_errors(_cmd_submit))

    t = ssub.add_parser("train", parents=[remote], help="train a model on images rendered on the fly")
    t.add_argument("--steps", type=int, required=True, help="SGD steps in all")
    t.add_argument("--steps-per-unit", type=int, default=None, help="SGD steps per unit of work, dividing --steps (default 2, or 1 for odd --steps)")
    t.add_argument("--lr", default="0.05", help="learning rate, up to 6 decimals (default 0.05)")
    t.add_argument("--momentum", default="0.9", help="SGD momentum, 0 .. 0.999 (default 0.9)")
    t.add_argument("--batch-size", type=int, default=32, help="images per step, 1 .. 256 (default 32)")
    t.add_argument("--objective", default="lights", help="lights (count the lights) or light-direction (count and dominant direction)")
    t.add_argument("--arch", default="cnn-small", help="architecture preset (cnn-small)")
    t.add_argument("--seed", type=int, default=0, help="varies the initial weights (default 0)")
    _scene_options(t)
    _payment_options(t)
    t.set_defaults(func=handles_user_errors(_cmd_submit))

    s = tsub.add_parser("status", parents=[readonly], help="progress, blocks, payout and held-out metrics of a task")
    s.add_argument("task_id", metavar="ID", help="task id (64 hex digits, as `task submit` printed it)")
    s.add_argument("--no-metrics", action="store_true", help="skip the held-out metrics (the node computes them on request)")
    s.set_defaults(func=handles_user_errors(_cmd_status))

    ls = tsub.add_parser("list", parents=[readonly], help="the tasks on the ledger")
    ls.set_defaults(func=handles_user_errors(_cmd_list))

    res = tsub.add_parser("result", parents=[readonly], help="download a task's result: a model file or a checked dataset")
    res.add_argument("task_id", metavar="ID", help="task id")
    res.add_argument("-o", "--output", required=True, metavar="PATH",
                     help="train: the model file to write (e.g. model.pt); render: the directory for dataset.npz and labels.json")
    res.add_argument("--partial", action="store_true", help="the result so far of a task that is not complete")
    res.add_argument("--device", default="cpu", help="where a dataset is re-rendered (cpu or cuda; default cpu)")
    res.add_argument("--no-eval", action="store_true", help="train: do not score the model on the held-out set")
    res.set_defaults(func=handles_user_errors(_cmd_result))


def _task_id(text: str) -> str:
    from p2p.user_errors import UserError

    t = text.strip().lower()
    if len(t) != 64 or any(c not in "0123456789abcdef" for c in t):
        raise UserError(f"task id {text!r}: expected 64 hex digits (the txid `pouw task submit` printed)")
    return t


def _progress(args: argparse.Namespace):
    return None if args.json else (lambda msg: print(msg, file=sys.stderr, flush=True))


# --- submit --------------------------------------------------------------------------------------------


def _build_spec(args: argparse.Namespace):
    from p2p.task_builder import render_spec, train_spec
    from useful_work.tasks import SceneSettings

    scene = SceneSettings(args.image_size, args.min_objects, args.max_objects, args.min_lights, args.max_lights)
    if args.kind == "render":
        return render_spec(args.count, args.images_per_unit, scene)
    return train_spec(args.steps, args.steps_per_unit, args.lr, args.momentum, args.batch_size, args.objective,
                      args.arch, args.seed, scene)


def _cmd_submit(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from chain.tx import make_submit_task
    from p2p.amounts import format_amount
    from p2p.task_builder import SMALLER_UNITS, describe_spec, market_terms, option_hint
    from p2p.user_errors import BadTaskSpec, UserError
    from p2p.wallet_common import amount_json, check_funds, client, emit, load_wallet, parse_amount_arg, sign_and_send, unlock
    from useful_work.tasks import TaskSpecError, encode_spec

    try:
        spec = _build_spec(args)
        spec_bytes = encode_spec(spec)
    except TaskSpecError as exc:
        raise BadTaskSpec(f"task spec out of range: {exc}{option_hint(exc)}") from None
    bounty = parse_amount_arg(args.bounty, "--bounty", allow_zero=False)
    fee = parse_amount_arg(args.fee, "--fee")
    owner = load_wallet(args).keyfile.address  # a missing wallet is reported before anything else
    node = client(args)
    terms = market_terms(spec, node.params())
    if terms.over_limit:
        raise BadTaskSpec(f"task spec out of range: unit cost {terms.unit_cost:,} operations exceeds this network's limit of "
                          f"{terms.max_unit_cost:,} (max_unit_cost); make units smaller ({SMALLER_UNITS[spec.kind]})")
    if bounty < terms.min_bounty:
        raise BadTaskSpec(f"task spec out of range: --bounty {format_amount(bounty)} POUW is below this network's minimum "
                          f"of {format_amount(terms.unit_price)} per unit, {format_amount(terms.min_bounty)} POUW for "
                          f"{spec.units_total} units (unit cost {terms.unit_cost:,} operations)")
    summary = {"kind": spec.kind, "spec": {"kind": spec.kind, **asdict(spec)}, "units": spec.units_total,
               "bounty": amount_json(bounty), "fee": amount_json(fee), "per_unit": amount_json(bounty // spec.units_total),
               "unit_cost": terms.unit_cost, "max_unit_cost": terms.max_unit_cost, "min_bounty": amount_json(terms.min_bounty)}
    limit = f" (limit {terms.max_unit_cost:,})" if terms.max_unit_cost is not None else ""
    cost_line = (f"unit cost {terms.unit_cost:,} operations{limit}, minimum bounty {format_amount(terms.min_bounty)} POUW "
                 f"({format_amount(terms.unit_price)} per unit)")
    if args.dry_run:
        emit(args, {**summary, "sent": False},
             f"{describe_spec(spec)}\n{cost_line}\nbounty {format_amount(bounty)} POUW (about {format_amount(bounty // spec.units_total)} per unit), "
             f"fee {format_amount(fee)}: not sent (--dry-run)")
        return 0
    if bounty + fee > (1 << 64) - 1:
        raise UserError("--bounty plus --fee exceeds the largest amount")
    check_funds(node, owner, bounty + fee)  # before the password is asked for
    entry, key = unlock(args)
    sent = sign_and_send(node, key, bounty + fee,
                         lambda chain_id, nonce: make_submit_task(key, chain_id, nonce, fee, spec_bytes, bounty))
    task_id = sent.tx.txid.hex()
    data = {**summary, "task_id": task_id, "txid": task_id, "owner": entry.keyfile.address, "nonce": sent.nonce, "sent": True}
    emit(args, data, f"submitted: {describe_spec(spec)}\n{cost_line}\nbounty {format_amount(bounty)} POUW, fee {format_amount(fee)}\n"
                     f"task id {task_id}\nfollow it with: pouw task status {task_id}")
    return 0


# --- status, list --------------------------------------------------------------------------------------


def _pct(done: int, total: int) -> str:
    return f"{min(done, total) * 100 // total}%" if total else "open-ended"


def _cmd_status(args: argparse.Namespace) -> int:
    from p2p.amounts import format_amount
    from p2p.task_builder import describe_spec
    from p2p.user_errors import NotFound
    from p2p.wallet_common import amount_json, client, emit
    from useful_work.tasks import parse_spec

    task_id = _task_id(args.task_id)
    node = client(args)
    try:
        task = node.task(task_id)
    except NotFound:
        raise NotFound(f"task {task_id}: not on this node's chain (yet? a submitted task appears once its transaction is in a block)") from None
    spec = parse_spec(bytes.fromhex(task["spec"]))
    metrics = None
    if spec.kind == "train" and not args.no_metrics:
        metrics = node.task_metrics(task_id).get("heldout")
    total, done = task["units_total"], task["units_done"]
    data = {
        "task_id": task_id, "kind": task["kind"], "status": task["status"], "active": task["active"], "owner": task["owner"],
        "spec": {"kind": spec.kind, **{k: getattr(spec, k) for k in spec.__dataclass_fields__}},
        "units_done": done, "units_total": total, "blocks": task["blocks"],
        "bounty": amount_json(task["bounty"]), "paid": amount_json(task["paid"]),
        "created_height": task["created_height"], "completed_height": task["completed_height"] or None,
        "state_hash": task["state_hash"], "state": task.get("state"), "heldout": metrics,
    }
    where = "done at height %d" % task["completed_height"] if task["status"] == "done" else ("open, being worked on now" if task["active"] else "open, queued")
    lines = [
        f"task {task_id}",
        f"  {describe_spec(spec)}",
        f"  status   {where}",
        f"  progress {min(done, total) if total else done} of {total or 'open-ended'} units ({_pct(done, total)}), "
        f"{task['blocks']} block{'s' if task['blocks'] != 1 else ''}" + (f" (+{done - total} extra units carried by the last block)" if total and done > total else ""),
        f"  payment  bounty {format_amount(task['bounty'])} POUW, paid so far {format_amount(task['paid'])} POUW",
        f"  owner    {task['owner']}, created at height {task['created_height']}",
    ]
    if metrics:
        line = f"  held-out {metrics['images']} images: accuracy {metrics['accuracy']:.1%} (chain's fixed-point model), " \
               f"{metrics['exported_accuracy']:.1%} (exported PyTorch model), loss {metrics['loss']:.3f}, step {metrics['step']}"
        if metrics.get("direction_error_deg") is not None:
            line += f", direction error {metrics['direction_error_deg']:.1f} deg"
        lines.append(line)
    emit(args, data, "\n".join(lines))
    return 0


def _cmd_list(args: argparse.Namespace) -> int:
    from p2p.amounts import format_amount
    from p2p.wallet_common import client, emit

    tasks = client(args).tasks()["tasks"]
    lines = [f"{'task id':64s}  {'kind':6s} {'status':6s} {'units':>15s}  bounty"]
    for t in tasks:
        units = f"{t['units_done']}/{t['units_total'] or '-'}"
        lines.append(f"{t['task_id']}  {t['kind']:6s} {t['status']:6s} {units:>15s}  {format_amount(t['bounty'])}"
                     + ("  (default)" if t["default"] else "") + ("  *active" if t["active"] else ""))
    emit(args, {"tasks": tasks}, "\n".join(lines))
    return 0


# --- result --------------------------------------------------------------------------------------------


def _cmd_result(args: argparse.Namespace) -> int:
    from p2p.task_results import download_model, download_render_dataset
    from p2p.wallet_common import client, emit
    from useful_work.tasks import parse_spec

    task_id = _task_id(args.task_id)
    node = client(args)
    task = node.task(task_id)
    spec = parse_spec(bytes.fromhex(task["spec"]))
    if spec.kind == "render":
        r = download_render_dataset(node, task_id, args.output, args.partial, args.device, _progress(args))
        data = {"task_id": task_id, "kind": "render", "directory": str(r.directory), "units": r.units, "images": r.images,
                "units_on_chain": r.units_on_chain, "blocks": r.blocks, "state_hash": r.state_hash, "verified": True,
                "files": [str(r.directory / "dataset.npz"), str(r.directory / "labels.json")]}
        extra = (f"\n(the last block did {r.units_on_chain - r.units} units more than the task asked for; they count in the "
                 "chain of digests checked, but are not in the dataset)") if r.units_on_chain > r.units else ""
        emit(args, data, f"wrote {r.images} images ({r.units} units from {r.blocks} block{'s' if r.blocks != 1 else ''}) to {r.directory}/dataset.npz "
                         f"and labels.json\nevery unit re-rendered here from the chain's seeds matches the chain's digest{extra}")
        return 0
    r = download_model(node, task_id, args.output, args.partial, not args.no_eval, _progress(args))
    data = {"task_id": task_id, "kind": "train", "path": str(r.path), "step": r.step, "state_hash": r.state_hash,
            "heldout": r.metrics, "node_heldout": r.node_metrics, "verified": True}
    lines = [f"wrote {r.path}: {spec.arch} after {r.step} SGD steps (state {r.state_hash[:16]}, checked against the chain)",
             "load it with torch.load(path, weights_only=True); see docs/wallet.md"]
    if r.metrics:
        line = f"held-out accuracy of this file: {r.metrics['accuracy']:.1%} on {r.metrics['images']} images"
        if r.node_metrics:
            line += f" (the node reports {r.node_metrics['accuracy']:.1%} for the chain's model, {r.node_metrics['exported_accuracy']:.1%} for its export)"
        lines.append(line)
    emit(args, data, "\n".join(lines))
    return 0
