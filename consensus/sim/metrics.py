"""Metrics of one run, computed from its RunRecord (pure functions; the same for both work modes).

Counting window: heights above run.warmup_blocks and at most the final height minus
run.settle_blocks, so neither the start nor blocks whose fate was still open skew the rates.
Flat scalars go to the CSV; `details` (distributions, per-group tables) go to the JSON only.
"""

from __future__ import annotations

import math

import numpy as np

from consensus.sim import theory
from consensus.sim.config import Experiment
from consensus.sim.record import RunRecord


def main_chain(parent: list[int], tip: int) -> np.ndarray:
    out = []
    b = tip
    while b >= 0:
        out.append(b)
        b = parent[b]
    return np.array(out[::-1], dtype=np.int64)


def _r(x: float | None, digits: int = 9) -> float | None:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return None
    return round(float(x), digits)


def batch_stderr(values: np.ndarray, batches: int = 20) -> float:
    """Standard error of a mean over a correlated sequence, from the spread of batch means."""
    if len(values) < 2 * batches:
        return (
            float(values.std(ddof=1) / math.sqrt(len(values))) if len(values) > 1 else float("nan")
        )
    means = np.array([c.mean() for c in np.array_split(values, batches)])
    return float(means.std(ddof=1) / math.sqrt(batches))


def compute(record: RunRecord, exp: Experiment) -> tuple[dict, dict]:
    log = record.blocks
    pop = record.population
    n_blocks = len(log)
    parent = np.array(log.parent)
    height = np.array(log.height)
    miner = np.array(log.miner)
    found = np.array(log.found)
    published = np.isfinite(np.array(log.published))
    rejected = np.array(log.rejected)
    valid_pub = published & ~rejected
    valid_pub[0] = False
    chain = main_chain(log.parent, record.best_tip)
    on_main = np.zeros(n_blocks, dtype=bool)
    on_main[chain] = True
    on_main[0] = False
    top = int(height[record.best_tip])
    lo, hi = exp.run.warmup_blocks, top - exp.run.settle_blocks
    window = (height > lo) & (height <= hi)
    honest_node = pop.honest
    is_adv = np.zeros(n_blocks, dtype=bool)
    if pop.adversary is not None:
        is_adv = miner == pop.adversary
    honest_block = (miner >= 0) & ~is_adv

    m: dict = {}
    d: dict = {}
    m["duration_s"] = _r(record.duration_s, 6)
    m["blocks_found"] = n_blocks - 1
    m["blocks_published"] = int(valid_pub.sum())
    m["height"] = top
    pub_w = valid_pub & window
    main_w = on_main & window
    m["window_blocks"] = int(pub_w.sum())
    m["stale_rate"] = _r(1 - main_w.sum() / pub_w.sum()) if pub_w.any() else None
    hp = pub_w & honest_block
    m["honest_stale_rate"] = _r(1 - (main_w & honest_block).sum() / hp.sum()) if hp.any() else None
    if hp.any():
        s = m["honest_stale_rate"]
        m["honest_stale_rate_stderr"] = _r(math.sqrt(max(s * (1 - s), 1e-12) / hp.sum()))
    # forks: main-chain heights that also hold another published block
    per_height = np.bincount(height[valid_pub], minlength=top + 1)
    main_heights = height[main_w]
    if len(main_heights):
        forks = per_height[main_heights] >= 2
        f = float(forks.mean())
        m["fork_rate"] = _r(f)
        m["fork_rate_stderr"] = _r(math.sqrt(max(f * (1 - f), 1e-12) / len(forks)))
    if pub_w.any():
        s = m["stale_rate"]
        m["stale_rate_stderr"] = _r(math.sqrt(max(s * (1 - s), 1e-12) / pub_w.sum()))
        work = np.array(log.work, dtype=float)
        own_work = work - work[np.maximum(parent, 0)]
        m["stale_work_rate"] = _r(1 - own_work[main_w].sum() / own_work[pub_w].sum())
    # intervals
    t_all = record.duration_s / max(1, int(valid_pub.sum()))
    m["interval_all_s"] = _r(t_all, 6)
    main_ids = chain[1:]
    in_w = main_ids[(height[main_ids] > lo) & (height[main_ids] <= hi)]
    intervals = found[in_w] - found[parent[in_w]]
    if len(intervals):
        m["interval_mean_s"] = _r(intervals.mean(), 6)
        m["interval_cv"] = (
            _r(intervals.std() / intervals.mean(), 6) if intervals.mean() > 0 else None
        )
        m["interval_p50_s"] = _r(np.percentile(intervals, 50), 6)
        m["interval_p90_s"] = _r(np.percentile(intervals, 90), 6)
        hist_top = float(np.percentile(intervals, 99.5)) or 1.0
        counts, edges = np.histogram(intervals, bins=40, range=(0.0, hist_top))
        d["interval_histogram"] = {
            "edges": [_r(e, 6) for e in edges.tolist()],
            "counts": counts.tolist(),
            "mean": _r(intervals.mean(), 6),
        }
    target_s = exp.chain.block_interval_ms / 1000
    m["chain_growth_per_s"] = _r(top / record.duration_s, 9) if record.duration_s > 0 else None
    m["growth_vs_target"] = (
        _r(top / record.duration_s * target_s, 6) if record.duration_s > 0 else None
    )
    steps = np.linspace(0, len(chain) - 1, min(len(chain), 200)).astype(int)
    d["chain_growth"] = {
        "time_s": [_r(found[chain[i]], 4) for i in steps],
        "height": [int(height[chain[i]]) for i in steps],
    }
    # propagation
    if record.propagation:
        prop = np.array([(mean, mx, reach) for _, mean, mx, reach in record.propagation])
        finite = np.isfinite(prop[:, 0])
        if finite.any():
            m["delay_mean_s"] = _r(prop[finite, 0].mean(), 6)
            m["delay_max_mean_s"] = _r(prop[finite, 1].mean(), 6)
        m["reach_mean"] = _r(prop[:, 2].mean(), 6)
        if m.get("delay_mean_s") is not None:
            shares = pop.rate[pop.rate > 0]
            m["delay_over_interval"] = _r(m["delay_mean_s"] / t_all)
            m["theory_fork_rate"] = _r(theory.fork_rate_shares(m["delay_mean_s"], t_all, shares))
            m["theory_fork_rate_simple"] = _r(theory.fork_rate(m["delay_mean_s"], t_all))
            m["theory_stale_rate"] = _r(theory.stale_fraction(m["delay_mean_s"], t_all, shares))
    # shares of work and of blocks
    total_rate = float(pop.rate.sum())
    groups = []
    main_count = max(1, int(main_w.sum()))
    for name in pop.groups():
        nodes = [i for i, g in enumerate(pop.group) if g == name]
        rate = float(pop.rate[nodes].sum())
        if rate <= 0:
            continue
        node_mask = np.zeros(n_blocks, dtype=bool)
        node_mask[1:] = np.isin(miner[1:], nodes)
        groups.append(
            {
                "group": name,
                "nodes": len(nodes),
                "work_share": _r(rate / total_rate, 6),
                "block_share": _r((main_w & node_mask).sum() / main_count, 6),
                "blocks_found": int(node_mask.sum()),
            }
        )
    d["groups"] = groups
    miners = np.flatnonzero(pop.rate > 0)
    if len(miners) <= 100:
        on_main_by = (
            np.bincount(miner[main_w], minlength=pop.n)
            if main_w.any()
            else np.zeros(pop.n, dtype=int)
        )
        d["miners"] = [
            {
                "node": int(v),
                "group": pop.group[v],
                "work_share": _r(pop.rate[v] / total_rate, 6),
                "block_share": _r(on_main_by[v] / main_count, 6),
            }
            for v in miners.tolist()
        ]
    if len(groups) <= 50:
        for g in groups:
            m[f"block_share.{g['group']}"] = g["block_share"]
            m[f"work_share.{g['group']}"] = g["work_share"]
    adv = exp.adversary
    if pop.adversary is not None and adv.kind in (
        "selfish",
        "withholder",
        "fabricator",
        "reroller",
        "poisoner",
    ):
        series = is_adv[main_ids[(height[main_ids] > lo) & (height[main_ids] <= hi)]].astype(float)
        m["adversary_work_share"] = _r(float(pop.rate[pop.adversary]) / total_rate, 6)
        m["relative_revenue"] = _r(series.mean()) if len(series) else None
        m["relative_revenue_stderr"] = _r(batch_stderr(series)) if len(series) > 1 else None
        if adv.kind == "selfish":
            gamma = record.extras.get("gamma_realised", adv.gamma)
            m["gamma_realised"] = _r(gamma, 6)
            m["theory_relative_revenue"] = _r(theory.selfish_revenue(adv.share, gamma))
            # The same closed form at the share of blocks the attacker really found in this run:
            # it takes the luck of the draw out of the comparison and leaves the strategy's
            # dynamics.
            found_share = float(is_adv[1:].mean())
            m["adversary_found_share"] = _r(found_share)
            m["theory_relative_revenue_realised"] = _r(theory.selfish_revenue(found_share, gamma))
    if adv.kind == "fabricator" and pop.adversary is not None:
        fab = is_adv & np.array(log.checked)
        fab[0] = False
        n_fab = int(fab.sum())
        caught = int((fab & rejected).sum())
        m["fabricated_blocks"] = n_fab
        m["caught_blocks"] = caught
        if n_fab:
            rate = caught / n_fab
            units = np.array(log.units)[fab]
            k = exp.chain.spot_checks
            m["detection_rate"] = _r(rate)
            m["detection_rate_stderr"] = _r(math.sqrt(max(rate * (1 - rate), 1e-12) / n_fab))
            m["expected_detection"] = _r(
                float(
                    np.mean([theory.detection_for_units(adv.fabricate, k, int(u)) for u in units])
                )
            )
            m["theory_detection"] = _r(theory.detection(adv.fabricate, k))
    if adv.kind == "reroller" and pop.adversary is not None:
        m.update(reroller_metrics(record, exp, is_adv, honest_block, valid_pub))
    if adv.kind == "poisoner" and pop.adversary is not None and "poisoned" in record.extras:
        pm, pd = poisoner_metrics(record, exp, on_main, chain, lo)
        m.update(pm)
        d.update(pd)
    # verification against mining work
    units_run = float(record.units_run.sum())
    honest_verify = float(record.verify_units[honest_node].sum())
    m["units_run"] = int(units_run)
    m["mining_units_per_block"] = _r(units_run / max(1, top), 6)
    m["verify_units_per_node_per_block"] = _r(
        honest_verify / max(1, int(honest_node.sum())) / max(1, int(valid_pub.sum())), 6
    )
    m["verify_to_mining"] = _r(honest_verify / units_run, 9) if units_run else None
    m["verify_seconds_honest"] = _r(float(record.verify_seconds[honest_node].sum()), 6)
    useful = float(np.array(log.useful_units)[chain[1:]].sum())
    m["useful_fraction"] = _r(useful / units_run, 9) if units_run else None
    m["main_chain_units_share"] = (
        _r(float(np.array(log.real_units)[chain[1:]].sum()) / units_run, 9) if units_run else None
    )
    m.update(share_metrics(record, exp, m, main_w, chain))
    # partitions
    for i, value in enumerate(record.agreement_s):
        m[f"agreement_s.{i}" if i else "agreement_s"] = _r(value, 6)
    if record.flood:
        for key, value in record.flood.items():
            m[f"flood_{key}"] = _r(value, 6) if isinstance(value, float) else value
        total = m["flood_verify_seconds"] + (m["verify_seconds_honest"] or 0.0)
        m["flood_share_of_verification"] = (
            _r(m["flood_verify_seconds"] / total, 6) if total else None
        )
    m["cap_hits"] = record.extras.get("cap_hits", 0)
    return m, d


def reroller_metrics(
    record: RunRecord,
    exp: Experiment,
    is_adv: np.ndarray,
    honest_block: np.ndarray,
    valid_pub: np.ndarray,
) -> dict:
    """The re-roller's accepted blocks per unit it really ran, against the honest miners' (whole
    run).

    `reroller_ratio` is its accepted blocks (an honest verifier checked them and none refused
    them) per unit over the honest miners' accepted blocks per unit: 1 is honest mining.
    `reroller_ratio_rerolled` counts only its blocks whose trace holds a fabricated leaf (the rest
    were won inside the honest prefix). `reroller_ratio_expected` divides its accepted blocks by the
    blocks honest mining of the same units would win on average (units times target / 2^256 of the
    tip each ran on): the same comparison without the honest miners' luck, and without the small
    edge of a miner that runs a fixed number of units per tip (honest miners spend more units on the
    tips that take long, which are the harder ones). `theory_reroller_ratio` is what its units
    should give: prefix units earn like honest ones, re-roll units are worth the closed-form
    acceptance (1 - k/(h+1) chained, 0 last).
    """
    log = record.blocks
    adv_node = record.population.adversary
    honest_node = record.population.honest
    rejected = np.array(log.rejected)
    rerolled = np.array(log.rerolled)
    checked = np.array(log.checked)
    rerolled[0] = False
    accepted = (
        valid_pub & checked
    )  # a block no honest node validated (a lost tie, the run's end) is neither
    k, h, strategy = (
        exp.chain.spot_checks,
        exp.adversary.honest_prefix,
        exp.adversary.reroll_strategy,
    )
    m: dict = {}
    adv_units = int(record.units_run[adv_node])
    honest_units = int(record.units_run[honest_node].sum())
    adv_ok = int((is_adv & accepted).sum())
    adv_rerolled_ok = int((is_adv & accepted & rerolled).sum())
    honest_ok = int((honest_block & accepted).sum())
    m["reroller_units_run"] = adv_units
    m["reroller_blocks"] = adv_ok
    m["reroller_blocks_rerolled"] = adv_rerolled_ok
    ground = is_adv & rerolled & checked
    m["rerolled_blocks"] = int(ground.sum())
    m["rerolled_refused"] = int((ground & rejected).sum())
    predicted = record.extras.get("reroll_refusal_predicted")
    if predicted is not None:
        # Real mode: the refusals the challenge rule predicts from each block's ticket, to set
        # against the real validation's.
        m["rerolled_refused_predicted"] = int(
            sum(1 for b in np.flatnonzero(ground).tolist() if predicted.get(b))
        )
    m["honest_blocks_per_unit"] = _r(honest_ok / honest_units) if honest_units else None
    m["reroller_blocks_per_unit"] = _r(adv_ok / adv_units) if adv_units else None
    if honest_units and honest_ok and adv_units:
        honest_rate = honest_ok / honest_units
        ratio = adv_ok / adv_units / honest_rate
        m["reroller_ratio"] = _r(ratio)
        # Poisson counts on both sides (the plug-in estimate: no error on a count of zero).
        m["reroller_ratio_stderr"] = _r(
            ratio * math.sqrt(1 / max(adv_ok, 1) + 1 / honest_ok) if adv_ok else 0.0
        )
        rerolled_ratio = adv_rerolled_ok / adv_units / honest_rate
        m["reroller_ratio_rerolled"] = _r(rerolled_ratio)
        m["reroller_ratio_rerolled_stderr"] = _r(
            rerolled_ratio * math.sqrt(1 / max(adv_rerolled_ok, 1) + 1 / honest_ok)
            if adv_rerolled_ok
            else 0.0
        )
    if ground.any():
        n = int(ground.sum())
        rate = 1 - m["rerolled_refused"] / n
        m["reroll_acceptance"] = _r(rate)
        m["reroll_acceptance_stderr"] = _r(math.sqrt(max(rate * (1 - rate), 1e-12) / n))
        units = np.array(log.units)[ground]
        m["expected_reroll_acceptance"] = _r(
            float(np.mean([theory.reroll_acceptance(strategy, k, int(u)) for u in units]))
        )
    accept = theory.reroll_acceptance(strategy, k, h + 2)
    m["theory_reroll_acceptance"] = _r(accept)
    prefix_units = float(record.extras.get("reroll_prefix_units", 0.0))
    roll_units = float(record.extras.get("reroll_roll_units", 0.0))
    expected_prefix = float(record.extras.get("reroll_expected_prefix", 0.0))
    expected_roll = float(record.extras.get("reroll_expected_roll", 0.0))
    if prefix_units + roll_units > 0:
        m["reroller_prefix_share"] = _r(prefix_units / (prefix_units + roll_units), 6)
    expected = expected_prefix + expected_roll
    if expected > 0:
        m["reroller_expected_blocks"] = _r(expected, 6)
        m["reroller_ratio_expected"] = _r(adv_ok / expected)
        m["reroller_ratio_expected_stderr"] = _r(math.sqrt(adv_ok) / expected)
        m["theory_reroller_ratio"] = _r((expected_prefix + accept * expected_roll) / expected)
        m["theory_reroller_ratio_rerolled"] = _r(accept * expected_roll / expected)
    if "reroll_hashes" in record.extras:
        m["reroller_hashes"] = int(record.extras["reroll_hashes"])
    if "reroll_idle_s" in record.extras:
        m["reroller_idle_share"] = (
            _r(record.extras["reroll_idle_s"] / record.duration_s, 6)
            if record.duration_s > 0
            else None
        )
    return m


def poisoner_metrics(
    record: RunRecord, exp: Experiment, on_main: np.ndarray, chain: np.ndarray, lo: int
) -> tuple[dict, dict]:
    """The poisoner's blocks (consensus/sim/poison.py) against the auditors
    (consensus/sim/audits.py).

    Counted: its blocks whose trace holds the jump leaf, above run.warmup_blocks and low enough that
    the fraud window closed inside the run (height <= final height - reward_maturity + 1). A block
    is decided when the spot checks refused it or it is on the best chain (a stale one earns
    nothing, poisoned or not, and is left out). Per decided block, in block rewards (bounty share
    aside):

    - `poison_survival`: share that passed the spot checks and that no fraud proof took within the
      window; with no auditors it is the spot checks' pass rate, about 1 - k/(n-1);
    - `poison_reward`: the expected reward of poisoning over mining the same trace honestly:
      survival * (1 + G) - 1, with G = adversary.poison_gain the worth to the poisoner of a poisoned
      state that outlives the window (an honest trace earns 1; a refused or proven block earns 0);
    - `poison_survival_blocks`: over its best-chain blocks, blocks from the block to the one
      carrying its proof, or reward_maturity when none did (the window's end);
    - `poison_prover_reward`, `poison_burned`: what the forfeits paid provers and burned;
    - `theory_poison_survival`, `theory_poison_reward`: the closed forms, the mean of 1 - k/(n-1)
      over its blocks times (1 - blocks_share)^auditors (auditors that keep up with the window).
    """
    from consensus.sim.poison import spot_pass

    log = record.blocks
    x = record.extras
    maturity = exp.chain.reward_maturity
    k = exp.chain.spot_checks
    gain = exp.adversary.poison_gain
    top = int(log.height[record.best_tip])
    proven: dict = x["poison_proven"]
    m: dict = {"auditors": x["auditors"], "audit_unit_rate": _r(x["audit_unit_rate"], 6)}
    blocks = [b for b in x["poisoned"] if lo < log.height[b] <= top - maturity + 1]
    refused = [b for b in blocks if x["poisoned"][b][1]]
    main = [b for b in blocks if on_main[b]]
    caught = [b for b in main if b in proven]
    decided = len(refused) + len(main)
    m["poisoned_blocks"] = len(blocks)
    m["poison_refused"] = len(refused)
    m["poison_main"] = len(main)
    m["poison_stale"] = len(blocks) - decided
    m["poison_proven"] = len(caught)
    d: dict = {}
    if decided:
        passed = len(main) / decided
        survival = (len(main) - len(caught)) / decided
        se = math.sqrt(max(survival * (1 - survival), 1e-12) / decided)
        m["poison_spot_pass"] = _r(passed)
        m["poison_spot_pass_stderr"] = _r(math.sqrt(max(passed * (1 - passed), 1e-12) / decided))
        m["theory_poison_spot_pass"] = _r(
            float(
                np.mean(
                    [
                        spot_pass(exp.adversary.jump_at, x["poisoned"][b][0], k)
                        for b in refused + main
                    ]
                )
            )
        )
        m["poison_survival"] = _r(survival)
        m["poison_survival_stderr"] = _r(se)
        m["poison_reward"] = _r(survival * (1 + gain) - 1)
        m["poison_reward_stderr"] = _r((1 + gain) * se)
        m["poison_reward_unaudited"] = _r(
            passed * (1 + gain) - 1
        )  # the same blocks with no fraud proofs
        # Closed form for auditors that keep up (every pick replayed within the window): each of the
        # A auditors misses a block with probability 1 - blocks_share.
        missed = (1 - exp.auditors.blocks_share) ** x["auditors"]
        m["theory_poison_survival"] = _r(m["theory_poison_spot_pass"] * missed)
        m["theory_poison_reward"] = _r(m["theory_poison_spot_pass"] * missed * (1 + gain) - 1)
        share = exp.chain.fraud_prover_share_pct / 100
        m["poison_prover_reward"] = _r(len(caught) / decided * share)
        m["poison_burned"] = _r(len(caught) / decided * (1 - share))
    if main:
        m["poison_detection"] = _r(len(caught) / len(main))
        lives = np.array(
            [proven[b] - log.height[b] if b in proven else maturity for b in main], dtype=float
        )
        m["poison_survival_blocks"] = _r(float(lives.mean()), 6)
        m["poison_survival_blocks_stderr"] = _r(
            float(lives.std(ddof=1) / math.sqrt(len(lives))) if len(lives) > 1 else None, 6
        )
        if caught:
            m["poison_survival_blocks_proven"] = _r(
                float(np.mean([proven[b] - log.height[b] for b in caught])), 6
            )
        counts, edges = np.histogram(
            lives, bins=min(maturity, 40), range=(0.0, float(maturity) + 1e-9)
        )
        d["poison_survival_histogram"] = {
            "edges": [_r(e, 6) for e in edges.tolist()],
            "counts": counts.tolist(),
        }
    window = [b for b in chain[1:].tolist() if lo < log.height[b] <= top - maturity + 1]
    if window:
        replayed = x["audit_replayed"]
        m["audit_coverage"] = _r(sum(1 for b in window if b in replayed) / len(window))
    units_run = float(record.units_run.sum())
    m["audit_units"] = int(x["audit_units"])
    m["audit_to_mining"] = _r(x["audit_units"] / units_run, 9) if units_run else None
    m["audit_skipped"] = x["audit_skipped"]
    m["audit_late"] = x["audit_late"]
    return m, d


def share_metrics(
    record: RunRecord, exp: Experiment, m: dict, main_w: np.ndarray, chain: np.ndarray
) -> dict:
    """Verification against work both ways, and shares' figures (modelled mode with
    chain.shares_per_block > 0: consensus/sim/share_model.py).

    - `verify_over_block_work`: units one node re-runs per block (block and gossip) over the units
      all miners ran per block: a node's verification against the block's work;
    - `verify_over_own_mining`: the same over the units one miner runs per block (mining units per
      block / miners): a node's verification against its own mining;
    - `share_claims_per_block`, `share_included_per_block`, `share_units_per_block`: claims,
      shares and credited claim units per best-chain block (window);
    - `share_block_verify_units`: what a node that saw none of the claims on gossip re-runs for a
      block (the winner's 1 + k, each included share's 1 + share_spot_checks);
      `share_gossip_verify_units`: share versions a node verifies on gossip per block;
    - `block_bytes_mean`, `share_bytes_over_limit`: bytes per best-chain block (128 per leaf, an
      opening of `work.state_bytes` per re-run unit, 250 per claim); blocks whose claims exceed
      max_share_bytes (not applied by the model);
    - `reward_cv_small` (`_no_shares`): coefficient of variation of a miner's reward per block
      interval over the best-chain window, pooled over the miners of the slowest group, with the
      block's rewards as `share_split` pays them (and with the whole subsidy to the winner).
    """
    out: dict = {}
    pop = record.population
    miners = np.flatnonzero(pop.rate > 0)
    per_block = m.get("mining_units_per_block")
    per_node = m.get("verify_units_per_node_per_block")
    if per_block and per_node is not None:
        out["verify_over_block_work"] = _r(per_node / per_block)
        out["verify_over_own_mining"] = _r(per_node / (per_block / max(1, len(miners))))
    model = record.extras.get("shares")
    blocks = [b for b in chain[1:].tolist() if main_w[b]]
    if not blocks or not len(miners):
        return out
    rates = pop.rate[miners]
    small = miners[rates == rates.min()]
    index = {int(v): i for i, v in enumerate(small.tolist())}
    log = record.blocks
    params = exp.chain
    total = np.zeros(len(small))
    square = np.zeros(len(small))
    total0 = np.zeros(len(small))
    square0 = 0.0
    for b in blocks:
        reward = np.zeros(len(small))
        w = index.get(int(log.miner[b]))
        subsidy = params.block_subsidy(int(log.height[b]))
        if w is not None:
            total0[w] += subsidy
            square0 += float(subsidy) ** 2
        if model is not None:
            bs = model.blocks[b]
            if w is not None:
                reward[w] += bs.winner_reward
            for v, r in zip(bs.miners.tolist(), bs.claim_rewards.tolist()):
                i = index.get(int(v))
                if i is not None:
                    reward[i] += r
        elif w is not None:
            reward[w] = subsidy
        total += reward
        square += reward**2
    cells = len(blocks) * len(small)

    def cv(s1: float, s2: float) -> float | None:
        mean = s1 / cells
        return math.sqrt(max(s2 / cells - mean**2, 0.0)) / mean if mean > 0 else None

    out["reward_cv_small"] = _r(cv(float(total.sum()), float(square.sum())), 6)
    out["reward_cv_small_no_shares"] = _r(cv(float(total0.sum()), square0), 6)
    if model is None:
        return out
    bss = [model.blocks[b] for b in blocks]
    out["share_claims_per_block"] = _r(float(np.mean([len(x.units) for x in bss])), 6)
    out["share_included_per_block"] = _r(float(np.mean([int(x.shares.sum()) for x in bss])), 6)
    out["share_units_per_block"] = _r(float(np.mean([int(x.units.sum()) for x in bss])), 6)
    out["share_block_verify_units"] = _r(float(np.mean([x.fresh_verify_units for x in bss])), 6)
    published = max(1, m.get("blocks_published") or 1)
    out["share_gossip_verify_units"] = _r((1 + model.s) * model.versions / published, 6)
    out["share_versions"] = model.versions
    out["share_claims_dropped"] = model.dropped_claims
    sizes = np.array([x.block_bytes for x in bss], dtype=float)
    out["block_bytes_mean"] = _r(float(sizes.mean()), 3)
    limit = params.max_share_bytes
    out["share_bytes_over_limit"] = _r(float((sizes > limit).mean()), 6)
    return out
