"""Following a task until it is done: `pouw task status ID --follow` and
`pouw task submit ... --wait`.

The node is polled every `interval` seconds; each poll reads the task (pending while its submit
transaction is in the mempool, then open, then done) and, for a training task whose state moved,
the held-out accuracy of that state (at most every `metrics_every` seconds, and once more at the
end: the node evaluates 1024 images per new state). On a terminal the progress is a bar in units
(tqdm) with the blocks and the accuracy beside it; elsewhere one line per change. Ctrl-C stops
following (the task goes on) with exit code 130; `timeout` seconds without completion end with
NotReady.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from p2p.wallet.client import NodeClient
from p2p.wallet.errors import Interrupted, NodeError, NotFound, NotReady

Sleep = Callable[[float], None]


@dataclass
class Progress:
    """What a follower saw last."""

    status: str = ""
    units_done: int = 0
    units_total: int = 0
    blocks: int = 0
    state_hash: str = ""
    accuracy: float | None = None
    step: int | None = None
    history: list[tuple[str, int, int]] = field(
        default_factory=list
    )  # (status, units done, blocks) per change

    def describe(self, units: bool = True) -> str:
        total = self.units_total or "open-ended"
        parts = [self.status]
        if units:
            done = min(self.units_done, self.units_total) if self.units_total else self.units_done
            parts.append(f"{done}/{total} units")
        parts.append(f"{self.blocks} block{'s' if self.blocks != 1 else ''}")
        if self.accuracy is not None:
            parts.append(f"held-out {self.accuracy:.1%} (step {self.step})")
        return "; ".join(parts)


def _status_word(task: dict) -> str:
    if task["status"] == "pending":
        return "pending (in the mempool)"
    if task["status"] == "done":
        return "done"
    return "open, being worked on" if task.get("active") else "open, queued"


class _Display:
    """A tqdm bar on a terminal; plain lines (one per change) elsewhere; nothing with quiet."""

    def __init__(self, task_id: str, total: int, quiet: bool) -> None:
        self.quiet = quiet
        self.bar = None
        self.last = ""
        self.task_id = task_id
        if quiet:
            return
        if sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(
                total=total or None,
                desc=f"task {task_id[:8]}",
                unit=" units",
                file=sys.stderr,
                dynamic_ncols=True,
                leave=True,
                bar_format="{desc} {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} units "
                "[{elapsed}]{postfix}"
                if total
                else "{desc} {n_fmt} units [{elapsed}]{postfix}",
            )

    def update(self, p: Progress) -> None:
        if self.quiet:
            return
        text = p.describe()
        if self.bar is not None:
            shown = min(p.units_done, p.units_total) if p.units_total else p.units_done
            self.bar.n = shown
            self.bar.set_postfix_str(
                p.describe(units=False), refresh=False
            )  # tqdm puts ", " before it
            self.bar.refresh()
        elif text != self.last:
            print(f"task {self.task_id[:8]}: {text}", file=sys.stderr, flush=True)
        self.last = text

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def follow_task(
    node: NodeClient,
    task_id: str,
    interval: float = 1.0,
    timeout: float = 0.0,
    metrics: bool = True,
    quiet: bool = False,
    sleep: Sleep = time.sleep,
    metrics_every: float = 5.0,
) -> tuple[dict, Progress]:
    """Poll until the task is done; returns its last record and what was seen on the way."""
    deadline = time.monotonic() + timeout if timeout > 0 else None
    progress = Progress()
    scored_at = float("-inf")
    display: _Display | None = None
    try:
        while True:
            try:
                task = node.task(task_id)
            except NotFound:
                if progress.status.startswith("pending"):
                    raise NotFound(
                        f"task {task_id} left the mempool without being mined (replaced, or its "
                        "fee too low?)"
                    ) from None
                raise
            progress.status = _status_word(task)
            progress.units_done, progress.units_total = task["units_done"], task["units_total"]
            progress.blocks = task.get("blocks", 0)
            if display is None:
                display = _Display(task_id, progress.units_total, quiet)
            due = time.monotonic() - scored_at >= metrics_every or task["status"] == "done"
            if (
                metrics
                and due
                and task["kind"] == "train"
                and task["status"] != "pending"
                and task["state_hash"] != progress.state_hash
            ):
                scored_at = time.monotonic()
                try:
                    held = node.task_metrics(task_id, state=task["state_hash"]).get("heldout")
                except (NotFound, NotReady, NodeError):
                    held = None  # the state moved on or is not scored here: next poll
                if held:
                    progress.accuracy, progress.step = held["accuracy"], held["step"]
                    progress.state_hash = task["state_hash"]
            seen = (task["status"], progress.units_done, progress.blocks)
            if not progress.history or progress.history[-1] != seen:
                progress.history.append(seen)
            display.update(progress)
            if task["status"] == "done":
                return task, progress
            if deadline is not None and time.monotonic() >= deadline:
                raise NotReady(
                    f"task {task_id} is not done after {timeout:g} s ({progress.describe()}); it "
                    "goes on"
                )
            sleep(interval)
    except KeyboardInterrupt:
        raise Interrupted(
            f"stopped following task {task_id} ({progress.describe() or 'nothing seen yet'}); the "
            f"task goes on: pouw task status {task_id[:12]} --follow"
        ) from None
    finally:
        if display is not None:
            display.close()
