"""PNG plots of a results document (points.json): the swept curves against their closed forms, and
an overview of one point (block intervals, chain growth, shares of blocks against shares of work).

Which curve: [plot] x / series / y in the experiment, else a default per adversary kind. x may
be a swept key ("adversary.share") or a metric ("delay_over_interval"). Closed forms come from
consensus.sim.theory and are drawn as lines; simulated points carry +-1 standard error bars
where the metric has one.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from consensus.sim import theory

DEFAULTS: dict[str, tuple[str | None, list[str]]] = {
    "selfish": ("adversary.share", ["relative_revenue"]),
    "fabricator": ("adversary.fabricate", ["detection_rate"]),
    "withholder": ("adversary.withhold", ["relative_revenue", "useful_fraction"]),
    "flooder": (None, ["flood_verify_seconds", "flood_max_wait_s", "honest_stale_rate"]),
    "reroller": ("adversary.honest_prefix", ["reroller_ratio", "reroll_acceptance"]),
    "poisoner": ("auditors.share", ["poison_reward", "poison_survival", "poison_survival_blocks"]),
    "none": (None, ["fork_rate", "stale_rate"]),
}


def _kind(doc: dict) -> str:
    return str(doc.get("config", {}).get("adversary", {}).get("kind", "none"))


def _value(point: dict, key: str) -> Any:
    if key == "point":
        return "\n".join(_label(v) for v in point["values"].values())
    if key in point["values"]:
        return point["values"][key]
    return point["metrics"].get(key)


def _numeric(values: list[Any]) -> bool:
    return all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)


def choose_axes(doc: dict) -> tuple[str | None, str | None, list[str]]:
    """(x, series, y metrics). x "point" means one bar per sweep point, labelled by its values."""
    config = doc.get("config", {})
    plot = config.get("plot", {})
    kind = _kind(doc)
    default_x, default_y = DEFAULTS.get(kind, DEFAULTS["none"])
    swept = list(doc.get("sweep", []))
    metrics = set().union(*(p["metrics"] for p in doc["points"])) if doc["points"] else set()
    y = list(plot.get("y") or default_y)
    x = plot.get("x")
    if x is None:
        if config.get("sweep", {}).get("zip") and len(swept) > 1:
            return "point", None, y
        if (
            kind == "none"
            and "delay_over_interval" in metrics
            and any(k.startswith(("network.", "chain.block_interval")) for k in swept)
        ):
            x = "delay_over_interval"
        elif default_x in swept:
            x = default_x
        else:
            x = swept[0] if swept else None
    series = plot.get("series")
    if series is None and x in swept:
        series = next((k for k in swept if k not in (x, "run.seed")), None)
    return x, series, y


def _theory_curve(
    y: str, x: str, xs: np.ndarray, points: list[dict]
) -> tuple[np.ndarray, np.ndarray, str] | None:
    grid = np.linspace(max(0.0, float(xs.min()) * 0.9), float(xs.max()) * 1.05, 200)
    if (
        y == "relative_revenue"
        and x == "adversary.share"
        and all(p["metrics"].get("gamma_realised") is not None for p in points)
    ):
        g = float(np.mean([p["metrics"]["gamma_realised"] for p in points]))
        return (
            grid,
            np.array([theory.selfish_revenue(a, g) for a in grid]),
            f"Eyal-Sirer, gamma={g:.2f}",
        )
    if y == "detection_rate" and x == "adversary.fabricate":
        k = int(points[0]["metrics"].get("spot_checks", 4))
        grid = np.linspace(0, max(float(xs.max()) * 1.05, 0.05), 200)
        return grid, np.array([theory.detection(f, k) for f in grid]), f"1-(1-f)^k, k={k}"
    if y == "fork_rate" and x == "delay_over_interval":
        grid = np.linspace(0, float(xs.max()) * 1.1, 200)
        return grid, 1 - np.exp(-grid), "1-exp(-d/T)"
    if y in ("stale_rate", "honest_stale_rate") and x == "delay_over_interval":
        grid = np.linspace(0, float(xs.max()) * 1.1, 200)
        return grid, grid / (1 + grid), "(d/T)/(1+d/T)"
    return None


def plot_curve(doc: dict, x: str, series: str | None, y: str, path: Path) -> Path | None:
    points = [p for p in doc["points"] if _value(p, y) is not None and _value(p, x) is not None]
    if not points:
        return None
    groups: dict[Any, list[dict]] = {}
    for p in points:
        groups.setdefault(repr(_value(p, series)) if series else None, []).append(p)
    xs_all = [_value(p, x) for p in points]
    fig, ax = plt.subplots(figsize=(7, 4.6))
    categorical = not _numeric(xs_all)
    labels: list[str] = []
    if categorical:
        labels = sorted(
            {_label(v) for v in xs_all},
            key=lambda s: [_label(_value(p, x)) for p in points].index(s),
        )
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for gi, members in enumerate(groups.values()):
        colour = colours[gi % len(colours)]
        members = sorted(
            members,
            key=lambda p: labels.index(_label(_value(p, x))) if categorical else _value(p, x),
        )
        xs = np.array(
            [
                labels.index(_label(_value(p, x))) if categorical else float(_value(p, x))
                for p in members
            ]
        )
        ys = np.array([float(_value(p, y)) for p in members])
        err = [p["metrics"].get(f"{y}_stderr") for p in members]
        name = f"{series}={_label(_value(members[0], series))}" if series else "simulated"
        if categorical:
            width = 0.8 / max(1, len(groups))
            bars = ax.bar(
                xs + gi * width - 0.4 + width / 2, ys, width=width, color=colour, label=name
            )
            ax.bar_label(bars, labels=[f"{v:.3g}" for v in ys], fontsize=7)
            positive = ys[ys > 0]
            if len(positive) and positive.max() / positive.min() > 100:
                ax.set_yscale("log")
            continue
        if all(e is not None for e in err):
            ax.errorbar(
                xs,
                ys,
                yerr=np.array(err, dtype=float),
                fmt="o",
                color=colour,
                capsize=3,
                label=f"{name} (sim)",
            )
        else:
            ax.plot(xs, ys, "o", color=colour, label=f"{name} (sim)")
        curve = _theory_curve(y, x, xs, members)
        if curve is not None:
            ax.plot(curve[0], curve[1], "-", color=colour, alpha=0.8, label=curve[2])
            if y in ("stale_rate", "honest_stale_rate") and x == "delay_over_interval":
                ax.plot(
                    curve[0],
                    1 - np.exp(-curve[0]),
                    ":",
                    color="grey",
                    label="1-exp(-d/T): the fork rate, not stale/all",
                )
        elif any(f"theory_{y}" in p["metrics"] for p in members):
            th = np.array(
                [p["metrics"].get(f"theory_{y}") or math.nan for p in members], dtype=float
            )
            ax.plot(xs, th, "--", color=colour, alpha=0.8, label=f"closed form ({name})")
        if y == "detection_rate" and any("expected_detection" in p["metrics"] for p in members):
            ex = np.array(
                [p["metrics"].get("expected_detection") or math.nan for p in members], dtype=float
            )
            ax.plot(xs, ex, "x", color=colour, label="1-(1-f)^min(k,n-1), per block")
    if not categorical and y == "poison_reward":
        ax.axhline(0.0, color="grey", linestyle=":", label="honest mining (0)")
    if not categorical and y.startswith("reroller_ratio"):
        ax.axhline(1.0, color="grey", linestyle=":", label="honest mining (1.0)")
    if (
        not categorical
        and x in ("adversary.honest_prefix", "chain.spot_checks")
        and min(float(v) for v in xs_all) >= 0
        and max(float(v) for v in xs_all) >= 16
    ):
        ax.set_xscale("symlog", linthresh=1)  # from 0 over powers of two
        ax.set_xlim(-0.3, max(float(v) for v in xs_all) * 1.5)
    if not categorical and y == "relative_revenue":
        share = [float(p["metrics"].get("adversary_work_share") or 0) for p in points]
        xs = np.array([float(_value(p, x)) for p in points])
        order = np.argsort(xs)
        ax.plot(
            xs[order],
            np.array(share)[order],
            ":",
            color="grey",
            label="share of work (honest mining)",
        )
    if categorical:
        ax.set_xticks(range(len(labels)))
        ax.set_xticklabels(labels, fontsize=8)
    ax.set_xlabel(" / ".join(k for k in points[0]["values"]) if x == "point" else x)
    ax.set_ylabel(y)
    ax.set_title(f"{doc.get('experiment', '')}: {y} vs {x}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _label(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def plot_overview(doc: dict, point: dict, path: Path) -> Path:
    """Block interval distribution, chain growth, and each group's share of blocks against its
    share of work."""
    m, d = point["metrics"], point["details"]
    interval_s = doc.get("config", {}).get("chain", {}).get("block_interval_ms", 5000) / 1000
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.2))
    ax = axes[0]
    hist = d.get("interval_histogram")
    if hist:
        edges = np.array(hist["edges"])
        counts = np.array(hist["counts"], dtype=float)
        widths = np.diff(edges)
        density = counts / max(1.0, counts.sum()) / widths
        ax.bar(
            edges[:-1], density, width=widths, align="edge", alpha=0.6, label="main-chain intervals"
        )
        mean = hist["mean"]
        grid = np.linspace(0, edges[-1], 200)
        ax.plot(grid, np.exp(-grid / mean) / mean, "r-", label=f"exponential, mean {mean:.3g} s")
        ax.set_xlabel("seconds between main-chain blocks")
        ax.set_ylabel("density")
        ax.legend(fontsize=8)
    ax.set_title("block interval distribution")
    ax = axes[1]
    growth = d.get("chain_growth")
    if growth:
        t = np.array(growth["time_s"], dtype=float)
        ax.plot(t, growth["height"], "-", label="best chain height")
        ax.plot(t, t / interval_s, "--", color="grey", label=f"one block per {interval_s:g} s")
        ax.set_xlabel("simulated seconds")
        ax.set_ylabel("height")
        ax.legend(fontsize=8)
    ax.set_title("chain growth")
    ax = axes[2]
    groups = d.get("groups", [])
    if groups:
        names = [g["group"] for g in groups]
        pos = np.arange(len(names))
        ax.bar(pos - 0.2, [g["work_share"] for g in groups], width=0.4, label="share of work")
        ax.bar(
            pos + 0.2,
            [g["block_share"] for g in groups],
            width=0.4,
            label="share of main-chain blocks",
        )
        ax.set_xticks(pos)
        ax.set_xticklabels(names, rotation=15, ha="right", fontsize=8)
        ax.legend(fontsize=8)
    ax.set_title("blocks vs work")
    values = ", ".join(f"{k}={_label(v)}" for k, v in point["values"].items())
    fig.suptitle(
        f"{doc.get('experiment', '')} point {point['index']} {values}  stale "
        f"{m.get('stale_rate')}, useful fraction {m.get('useful_fraction')}",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


FRONTIER_AXES = {
    "verify_over_block_work": "a node's verification / the block's work",
    "verify_over_own_mining": "a node's verification / its own mining",
}


Frontier = list[tuple[str | None, dict[str, list[float]], list[float]]]  # label, xs by metric, ys


def draw_frontier(axes: Any, series: Frontier) -> None:
    """The two frontier panels: useful fraction against each FRONTIER_AXES metric, one line per
    (label, x values by metric, useful fractions), with the 90 % and 3 % guides."""
    for ax, (metric, title) in zip(axes, FRONTIER_AXES.items()):
        for label, xs, ys in series:
            ax.plot(xs[metric], ys, marker="o", label=label)
        ax.set_xscale("log")
        ax.set_xlabel(title)
        ax.set_ylabel("useful fraction of all units")
        ax.axhline(0.9, color="grey", lw=0.8, ls="--")
        ax.grid(alpha=0.3)
    axes[0].axvline(0.03, color="grey", lw=0.8, ls="--")


def plot_frontier(doc: dict, path: Path) -> Path:
    """Shares: useful fraction against a node's verification over the block's work (left) and
    over its own mining (right), one line per setting of the other swept keys, a point per
    chain.shares_per_block."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    swept = [k for k in doc.get("sweep", []) if k != "chain.shares_per_block"]
    lines: dict[tuple, list[dict]] = {}
    for p in doc["points"]:
        if p["metrics"].get("share_included_per_block") is None:
            continue
        lines.setdefault(tuple(p["values"].get(k) for k in swept), []).append(p)
    series = []
    for key, pts in sorted(lines.items(), key=lambda kv: repr(kv[0])):
        pts = sorted(pts, key=lambda p: p["values"].get("chain.shares_per_block", 0))
        label = ", ".join(f"{k.split('.')[-1]}={_label(v)}" for k, v in zip(swept, key))
        xs = {m: [p["metrics"][m] for p in pts] for m in FRONTIER_AXES}
        series.append((label or None, xs, [p["metrics"]["useful_fraction"] for p in pts]))
    draw_frontier(axes, series)
    if swept:
        axes[0].legend(fontsize=7)
    fig.suptitle("Shares, modelled mode: useful fraction against verification (a point per N)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def make_plots(doc: dict, out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    x, series, ys = choose_axes(doc)
    if x is not None and len(doc["points"]) > 1:
        for y in ys:
            safe_x = x.replace(".", "_")
            p = plot_curve(doc, x, series, y, out / f"{y}_vs_{safe_x}.png")
            if p is not None:
                paths.append(p)
    if any("share_included_per_block" in p["metrics"] for p in doc["points"]):
        paths.append(plot_frontier(doc, out / "shares_frontier.png"))
    shown = doc["points"] if len(doc["points"]) <= 2 else doc["points"][:1]
    for point in shown:
        paths.append(plot_overview(doc, point, out / f"overview_{point['index']}.png"))
    return paths
