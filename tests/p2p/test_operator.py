"""What an operator and a devnet user meet, on real `pouw` processes on 127.0.0.1.

The README's own network file mines on; each startup failure a user can cause is one line and an
exit code of its own; `pouw node status|peers|mining|stop` find the node from its data directory;
a config file sets flags (flags win) and a log file gets ISO timestamps; a failing miner backs off
and says why; the devnet's dev wallet pays a new wallet through POUW_NODE alone, and the devnet's
nodes die with a launcher killed by SIGKILL.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import fields
from pathlib import Path

import plyvel
import pytest
from framework import FAST_NETWORK, REPO, NodeProcess, free_port, wait_until

from consensus.params import MEANINGS, ConsensusParams, ParamsError, load_params
from p2p.cli.params import parameter_rows
from p2p.lifecycle import (
    EXIT_CONFIG,
    EXIT_KEY,
    EXIT_LOCKED,
    EXIT_NETWORK,
    EXIT_PORT,
    RUNTIME_FILE,
)
from p2p.metrics import NodeMetrics

pytestmark = pytest.mark.integration

ISO_LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (INFO|WARNING|DEBUG|ERROR) ")


def pouw(
    *args: str, env: dict | None = None, stdin: str | None = None, timeout: float = 90
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "p2p.cli", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        input=stdin,
        env=env,
        timeout=timeout,
    )


def one_line_error(result: subprocess.CompletedProcess, code: int, *words: str) -> str:
    lines = result.stderr.strip().splitlines()
    assert result.returncode == code, (result.returncode, result.stderr)
    assert len(lines) == 1 and lines[0].startswith("pouw: error: "), result.stderr
    for w in words:
        assert w in lines[0], (w, lines[0])
    return lines[0]


def readme_network(path: Path, extra: str = "", task_extra: str = "") -> Path:
    """The README's `mynet.toml`, as printed there, with `extra` top-level lines added after its
    base line (a faster start for the test) and `task_extra` lines in its default task."""
    text = (REPO / "README.md").read_text()
    block = next(b for b in re.findall(r"```toml\n(.*?)```", text, re.S) if "# mynet.toml" in b)
    assert 'kind = "render"' in block and not re.search(
        r"^units\s*=", block, re.M
    )  # the example this test is about
    block = block.replace('base = "devnet"\n', f'base = "devnet"\n{extra}', 1)
    path.write_text(block + task_extra)
    return path


def status_or_none(node: NodeProcess) -> dict | None:
    try:
        return node.status()
    except OSError:  # not up yet
        return None


def dashboard_metrics() -> set[str]:
    doc = json.loads((REPO / "docs" / "grafana-dashboard.json").read_text())
    exprs = [t["expr"] for p in doc["panels"] for t in p["targets"]]
    return {m for e in exprs for m in re.findall(r"\bpouw_[a-z_]+", e)}


# --- the README's network, node commands, lock, busy port, stop, reindex -------------------------


def test_readme_network_mines_and_the_node_is_run_from_its_datadir(make_node, tmp_path):
    network = readme_network(tmp_path / "mynet.toml", extra="initial_units_per_block = 4\n")
    assert (
        load_params(network).default_task.units == 0
    )  # a render default task without `units` is open-ended
    dead = f"127.0.0.1:{free_port()}"
    node = make_node("mynet", network=network).start(mine=True, peers=[dead]).wait_ready()
    wait_until(lambda: node.height() >= 10, 90, "the README's network to mine 10 blocks")
    st = node.status()
    assert st["mining_state"] == "mining" and st["mining_error"] is None
    assert st["sync"]["state"] == "no-peers"  # its one peer is dead: not "synced"
    log = node.log_path.read_text()
    assert "no open task" not in log and "Traceback" not in log
    assert f"network devnet (from {network})" in log
    assert re.search(rf"peer {dead}: cannot connect \(.+\); retrying in \d+ s", log), log[-2000:]
    metrics = node.get("/metrics").decode()
    families = set(
        re.findall(r"^# TYPE (\S+) ", metrics, re.M)
    )  # labelled ones have no sample until first used
    missing = {
        m
        for m in dashboard_metrics()
        if m not in families and re.sub(r"_(bucket|sum|count)$", "", m) not in families
    }
    assert not missing, missing

    d = str(node.datadir)
    status = pouw("node", "status", "--datadir", d, "--json")
    assert status.returncode == 0, status.stderr
    assert (
        json.loads(status.stdout)["height"] >= 10
        and json.loads(status.stdout)["pid"] == node.proc.pid
    )
    text = pouw("node", "status", "--datadir", d)
    assert (
        text.returncode == 0 and f"PID {node.proc.pid}" in text.stdout and "no-peers" in text.stdout
    )
    assert pouw("node", "peers", "--datadir", d).stdout.startswith("0 peers")
    off = pouw("node", "mining", "off", "--datadir", d)
    assert (
        off.returncode == 0
        and "mining off" in off.stdout
        and node.status()["mining_state"] == "off"
    )

    # A second node on the same data directory, then one on the first node's API port.
    locked = pouw(
        "node",
        "--datadir",
        d,
        "--network",
        str(network),
        "--api",
        f"127.0.0.1:{free_port()}",
        "--listen",
        "",
    )
    one_line_error(locked, EXIT_LOCKED, "in use", f"PID {node.proc.pid}")
    busy = pouw(
        "node",
        "--datadir",
        str(tmp_path / "other"),
        "--network",
        str(network),
        "--api",
        f"127.0.0.1:{node.api_port}",
    )
    one_line_error(busy, EXIT_PORT, f"port {node.api_port}", "in use")

    stopped = pouw("node", "stop", "--datadir", d)
    assert stopped.returncode == 0 and f"node stopped (PID {node.proc.pid}" in stopped.stdout, (
        stopped.stderr
    )
    assert node.proc.wait(timeout=5) == 0
    assert not (node.datadir / RUNTIME_FILE).exists()
    gone = pouw("node", "status", "--datadir", d)
    assert gone.returncode == 6 and "no node is running" in gone.stderr

    # --reindex ends with a sentence, not a dict.
    height = st["height"]
    node.start(extra=["--reindex", "--no-mine"]).wait_ready()
    summary = [
        line for line in node.log_path.read_text().splitlines() if "reindex: rebuilt" in line
    ]
    assert len(summary) == 1 and "{" not in summary[0] and "tip height" in summary[0], summary
    assert node.height() >= height
    assert node.stop() == 0


# --- startup failures --------------------------------------------------------------------------


def test_startup_failures_are_one_line_each_with_its_own_code(tmp_path):
    finite = readme_network(tmp_path / "finite.toml", task_extra="units = 16\n")
    with pytest.raises(ParamsError, match="default_task.units"):
        load_params(finite)
    bad_net = pouw(
        "node",
        "--datadir",
        str(tmp_path / "a"),
        "--network",
        str(finite),
        "--api",
        f"127.0.0.1:{free_port()}",
        "--listen",
        "",
    )
    one_line_error(bad_net, EXIT_NETWORK, "default_task.units", "open-ended")

    cfg_dir = tmp_path / "b"
    cfg_dir.mkdir()
    (cfg_dir / "pouw.toml").write_text("mien = true\n")
    one_line_error(pouw("node", "--datadir", str(cfg_dir)), EXIT_CONFIG, "mien", "unknown setting")
    (cfg_dir / "pouw.toml").write_text('mine = "yes"\n')
    one_line_error(pouw("node", "--datadir", str(cfg_dir)), EXIT_CONFIG, "mine", "true or false")

    key_dir = tmp_path / "c"
    key_dir.mkdir()
    (key_dir / "node.key").write_text("not a key\n")
    bad_key = pouw(
        "node",
        "--datadir",
        str(key_dir),
        "--network",
        str(FAST_NETWORK),
        "--api",
        f"127.0.0.1:{free_port()}",
        "--listen",
        "",
    )
    one_line_error(bad_key, EXIT_KEY, "node key", str(key_dir / "node.key"))
    assert len({EXIT_NETWORK, EXIT_CONFIG, EXIT_KEY, EXIT_LOCKED, EXIT_PORT}) == 5


# --- config file, default data directory, log file, SIGHUP ---------------------------------------


def test_config_file_in_the_default_datadir_and_flags_win(tmp_path):
    home = tmp_path / "home"
    network = tmp_path / "fastnet.toml"
    network.write_text(FAST_NETWORK.read_text())
    datadir = home / ".pouw" / "fastnet"  # the default for --network fastnet.toml
    datadir.mkdir(parents=True)
    from_file, from_flag = free_port(), free_port()
    (datadir / "pouw.toml").write_text(
        f'network = "{network}"\napi = "127.0.0.1:{from_file}"\nlisten = ""\nmine = '
        'true\nlog-file = "node.log"\nthreads = 1\ndevice = "cpu"\n'
    )
    env = {**os.environ, "HOME": str(home)}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "p2p.cli",
            "node",
            "--network",
            str(network),
            "--api",
            f"127.0.0.1:{from_flag}",
        ],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        probe = NodeProcess(datadir, network)
        probe.api_port = from_flag  # the flag won over the file's api
        wait_until(
            lambda: (status_or_none(probe) or {}).get("height", 0) >= 2,
            60,
            "mining from the config file",
        )
        runtime = json.loads((datadir / RUNTIME_FILE).read_text())
        assert runtime["api"] == f"127.0.0.1:{from_flag}" and runtime["pid"] == proc.pid
        st = pouw(
            "node", "status", "--network", str(network), "--json", env=env
        )  # the default datadir, found by network
        assert st.returncode == 0 and json.loads(st.stdout)["mining"] is True, st.stderr
        proc.send_signal(signal.SIGHUP)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    lines = (datadir / "node.log").read_text().splitlines()
    assert lines and all(ISO_LINE.match(line) for line in lines), lines[:3]
    assert (
        any("stopping: signal SIGHUP" in line for line in lines) and "stopped cleanly" in lines[-1]
    )
    assert proc.stderr.read() == ""  # everything went to the log file


# --- a failing miner ---------------------------------------------------------------------------


def test_a_failing_miner_backs_off_with_one_line_a_metric_and_a_status(make_node):
    node = make_node("faulty").start(mine=True).wait_ready()
    wait_until(lambda: node.height() >= 3, 60, "a few blocks")
    node.pause_mining()
    task = node.status()["active_task"]
    assert node.stop() == 0
    # A real fault: the store loses the blob the next unit starts from (a damaged disk would do it).
    db = plyvel.DB(str(node.datadir / "chain"))
    db.delete(b"s" + bytes.fromhex(task["state_hash"]))
    db.close()
    node.start(mine=True).wait_ready()
    st = wait_until(
        lambda: (s := node.status())["mining_state"] == "failing" and s,
        30,
        "mining to report its failure",
    )
    assert "not stored" in st["mining_error"] and st["mining"] is True
    time.sleep(3.5)
    log = node.log_path.read_text()
    failures = [line for line in log.splitlines() if "mining failed:" in line]
    assert 2 <= len(failures) <= 3, failures  # 1 s, 2 s, 4 s...: no spinning
    assert "Traceback" not in log and "retrying in" in failures[-1]
    metrics = node.get("/metrics").decode()
    assert re.search(r"^pouw_mining_failing 1\.0$", metrics, re.M)
    assert float(re.search(r"^pouw_mining_errors_total (\S+)$", metrics, re.M)[1]) >= 2
    off = node.admin("mining", {"enabled": False})
    assert off == {"mining": False} and node.status()["mining_state"] == "off"


# --- the devnet --------------------------------------------------------------------------------


def _alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "State:\tZ" not in status


def test_devnet_wallet_pays_through_pouw_node_and_nodes_die_with_the_launcher(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("POUW_")}
    env["HOME"] = str(home)
    api_port, p2p_port = free_port(), free_port()
    while abs(api_port - p2p_port) <= 1:
        p2p_port = free_port()
    root = tmp_path / "devnet-data"
    out = open(tmp_path / "launcher.out", "w")  # noqa: SIM115 - the launcher writes to it until the test stops it
    launcher = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "p2p.cli",
            "devnet",
            "--nodes",
            "2",
            "--datadir",
            str(root),
            "--network",
            str(FAST_NETWORK),
            "--api-port",
            str(api_port),
            "--p2p-port",
            str(p2p_port),
        ],
        cwd=REPO,
        env=env,
        stdout=out,
        stderr=subprocess.STDOUT,
    )
    pids: list[int] = []
    try:
        info = wait_until(
            lambda: (
                (root / "nodes.json").exists() and json.loads((root / "nodes.json").read_text())
            ),
            30,
            "nodes.json",
        )
        pids = [n["pid"] for n in info["nodes"]]
        assert [n["api"] for n in info["nodes"]] == [
            f"http://127.0.0.1:{api_port}",
            f"http://127.0.0.1:{api_port + 1}",
        ]
        for n in info["nodes"]:
            probe = NodeProcess(Path(n["datadir"]), FAST_NETWORK)
            probe.api_port = int(n["api"].rsplit(":", 1)[1])
            wait_until(
                lambda probe=probe: (
                    (st := status_or_none(probe)) and st["height"] >= 1 and st["peers"] == 1
                ),
                60,
                f"{n['name']} up and peered",
            )
        printed = (tmp_path / "launcher.out").read_text()
        export = re.search(r"export POUW_NODE=(\S+)", printed)[1]
        assert "password 'dev'" in printed and "prefunded with 1,000,000 POUW" in printed
        again = pouw(
            "devnet", "--datadir", str(tmp_path / "second"), "--api-port", str(api_port), env=env
        )
        one_line_error(again, EXIT_PORT, str(api_port), "in use")

        wallet_env = {**env, "POUW_NODE": export}  # the one thing the user sets
        created = pouw("wallet", "create", "-w", "bob", env=wallet_env, stdin="bobs password\n")
        assert created.returncode == 0, created.stderr
        bob = pouw("wallet", "address", "-w", "bob", env=wallet_env).stdout.strip()
        dev = json.loads(pouw("wallet", "balance", "-w", "dev", "--json", env=wallet_env).stdout)
        assert dev["address"] == info["wallet"]["address"]
        sent = pouw(
            "wallet",
            "send",
            "bob",
            "12.5",
            "-w",
            "dev",
            "--wait",
            "60",
            env=wallet_env,
            stdin="dev\n",
        )
        assert sent.returncode == 0 and "in block" in sent.stdout, sent.stdout + sent.stderr
        balance = json.loads(pouw("wallet", "balance", bob, "--json", env=wallet_env).stdout)
        assert balance["balance"]["units"] == 1_250_000_000, balance

        launcher.kill()  # SIGKILL: no handler runs in the launcher
        launcher.wait()
        killed = time.monotonic()
        wait_until(
            lambda: not any(_alive(p) for p in pids),
            5,
            "the devnet's nodes to exit after the launcher's SIGKILL",
            interval=0.1,
        )
        print(f"\ndevnet nodes gone {time.monotonic() - killed:.1f} s after the launcher's SIGKILL")
    finally:
        if launcher.poll() is None:
            launcher.kill()
            launcher.wait()
        for p in pids:
            if _alive(p):
                os.kill(p, signal.SIGKILL)
        out.close()


# --- parameters, the dashboard, pipes ----------------------------------------------------------


def test_params_lists_every_parameter_with_range_and_meaning():
    rows = {r["name"]: r for r in parameter_rows("devnet")}
    top = {f.name for f in fields(ConsensusParams)} - {"default_task"}
    task = {f"default_task.{f.name}" for f in fields(load_params("devnet").default_task)} | {
        "default_task.kind"
    }
    assert set(rows) == top | task
    for name, r in rows.items():
        assert r["range"] and r["meaning"] == MEANINGS[name], name
    assert (
        rows["spot_checks"]["value"] == 3
        and rows["spot_checks"]["default"] == 4
        and rows["spot_checks"]["range"] == "0 .. 64"
    )
    assert rows["default_task.units"]["range"] == "0"


def test_dashboard_queries_name_exported_metrics():
    doc = json.loads((REPO / "docs" / "grafana-dashboard.json").read_text())
    assert doc["title"] and doc["uid"] and isinstance(doc["schemaVersion"], int)
    ids = [p["id"] for p in doc["panels"]]
    assert len(ids) == len(set(ids)) >= 8
    for p in doc["panels"]:
        assert set(p["gridPos"]) == {"h", "w", "x", "y"} and p["targets"], p["title"]
        for t in p["targets"]:
            assert t["refId"] and t["expr"].count("(") == t["expr"].count(")"), t
    exported = set()
    for family in NodeMetrics().registry.collect():
        exported |= {
            family.name,
            f"{family.name}_total",
            f"{family.name}_bucket",
            f"{family.name}_sum",
            f"{family.name}_count",
        }
    assert dashboard_metrics() <= exported, dashboard_metrics() - exported
    assert {
        "pouw_mining_failing",
        "pouw_mining_errors_total",
        "pouw_height",
        "pouw_peers",
    } <= dashboard_metrics()


def test_a_closed_pipe_ends_output_quietly():
    import fcntl

    read_end, write_end = os.pipe()
    fcntl.fcntl(
        write_end, fcntl.F_SETPIPE_SZ, 4096
    )  # smaller than the table, so the writer meets the closed pipe
    proc = subprocess.Popen(
        [sys.executable, "-m", "p2p.cli", "params"],
        cwd=REPO,
        stdout=write_end,
        stderr=subprocess.PIPE,
    )
    os.close(write_end)
    with os.fdopen(read_end, "rb") as reader:
        assert reader.readline().startswith(b"consensus parameters of devnet")
    # closed, as `| head -1` does
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=30) == 141 and err == "", err
