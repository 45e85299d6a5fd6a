"""The consensus simulator: networks of nodes, adversaries and parameter sweeps (docs/simulator.md).

One job per module:
- config: experiment files (TOML) -> typed settings and sweep points
- population, topology, network: who the nodes are, how they connect, how blocks travel
- modelled: the modelled-work engine (thousands of nodes); real: real ChainStates and Miners
- selfish, fabrication, reroll, flood: adversary mechanics (pre_v2: what re-rolling gained under the
  old rule)
- record, metrics, theory: what a run leaves, what is measured from it, the closed forms it is
  compared with
- runner, output, plots, bench, measure: sweeps in worker processes, files, PNGs, the scale
  benchmark
It imports nothing from p2p; `pouw sim` lives in p2p/cli/sim.py.
"""
