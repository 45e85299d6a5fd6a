"""Storage faults with real node processes and real LevelDB: a missing CURRENT file, a flipped
byte in a table file, and a disk that fills up (a 20 MiB tmpfs, as root) and then has room again."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import plyvel
import pytest
from framework import NodeProcess, wait_until, write_network


def _mine_then_stop(node: NodeProcess, height: int) -> dict:
    node.start(mine=True).wait_ready()
    wait_until(lambda: node.height() >= height, 90, f"{height} blocks")
    node.pause_mining()
    tip = node.status()
    assert node.stop() == 0, node.log_tail()
    return tip


def _exit_of_failed_start(node: NodeProcess, timeout: float = 60) -> tuple[int, str]:
    offset = node.log_path.stat().st_size if node.log_path.exists() else 0
    node.start()
    assert node.proc is not None
    code = node.proc.wait(timeout=timeout)
    return code, node.log_path.read_text(errors="replace")[offset:]


def _chain_files(node: NodeProcess) -> set[str]:
    """The store's data files (LevelDB's own text log LOG, LOG.old and the LOCK file left out)."""
    return {
        p.name
        for p in (node.datadir / "chain").iterdir()
        if p.name not in ("LOG", "LOG.old", "LOCK")
    }


def test_missing_current_is_refused_and_reindex_recovers_every_block(make_node):
    node = make_node("a")
    tip = _mine_then_stop(node, 8)
    (node.datadir / "chain" / "CURRENT").unlink()
    before = _chain_files(node)
    code, out = _exit_of_failed_start(node)
    lines = [line for line in out.splitlines() if line.strip()]
    assert code == 14, out
    assert (
        lines[-1].startswith("pouw: error: ")
        and "CURRENT is missing" in lines[-1]
        and "--reindex" in lines[-1]
    ), out
    assert "Traceback" not in out
    assert _chain_files(node) == before  # nothing created, nothing deleted
    # --reindex repairs the LevelDB files (they are all intact) and replays every block.
    offset = node.log_path.stat().st_size
    node.start(extra=["--reindex"]).wait_ready(timeout=120)
    st = node.status()
    assert st["height"] == tip["height"] and st["best_hash"] == tip["best_hash"]
    assert "0 blocks of the old best chain lost" in node.log_path.read_text()[offset:]
    assert node.stop() == 0


def test_flipped_byte_in_a_table_file_is_one_line_and_reindex_says_what_it_lost(
    make_node, tmp_path
):
    network = write_network(
        tmp_path / "quick.toml", retarget_half_life_ms=10**10, initial_units_per_block=3
    )
    node = make_node("a", network=network)
    tip = _mine_then_stop(node, 40)
    chain_dir = node.datadir / "chain"
    db = plyvel.DB(str(chain_dir))  # the node is stopped: write the log out into sorted tables
    db.compact_range()
    db.close()
    tables = sorted(chain_dir.glob("*.ldb"), key=lambda p: p.stat().st_size)
    assert tables, sorted(_chain_files(node))
    table = tables[-1]
    data = bytearray(table.read_bytes())
    data[len(data) // 2] ^= 0x10
    table.write_bytes(bytes(data))
    code, out = _exit_of_failed_start(node)
    lines = [line for line in out.splitlines() if line.strip()]
    assert code == 14, out
    assert (
        lines[-1].startswith("pouw: error: ")
        and table.name in lines[-1]
        and "--reindex" in lines[-1]
    ), out
    assert "Traceback" not in out
    offset = node.log_path.stat().st_size
    node.start(extra=["--reindex"]).wait_ready(timeout=180)
    log = node.log_path.read_text()[offset:]
    summary = [line for line in log.splitlines() if "reindex: recovered height" in line]
    assert len(summary) == 1, log
    st = node.status()
    print(f"\nflipped byte in {table.name}: {summary[0].partition('reindex: recovered')[2]}")
    assert 0 <= st["height"] <= tip["height"]
    assert (node.datadir / "chain.damaged").is_dir()  # kept, not deleted
    assert node.stop() == 0


def _can_mount_tmpfs(where: Path) -> str | None:
    if os.geteuid() != 0:
        return "the disk-full test mounts a tmpfs and needs root"
    if shutil.which("mount") is None:
        return "no mount command"
    where.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=20m", "tmpfs", str(where)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        return f"cannot mount a tmpfs here: {done.stderr.strip()}"
    return None


def _fill(path: Path) -> int:
    written = 0
    chunk = b"\0" * (64 << 10)
    with open(path, "wb", buffering=0) as f:
        while True:
            try:
                written += f.write(chunk)
            except OSError:
                return written


def test_disk_full_stops_acceptance_and_loses_no_block_after_space_returns(tmp_path):
    disk = tmp_path / "disk"
    why = _can_mount_tmpfs(disk)
    if why:
        pytest.skip(why)
    network = write_network(tmp_path / "fast-now.toml")
    node = NodeProcess(disk / "node", network=network, name="full")
    node.log_path = tmp_path / "full.log"
    try:
        node.start(mine=True).wait_ready()
        wait_until(lambda: node.height() >= 5, 60, "5 blocks")
        filler = disk / "filler"
        _fill(filler)
        st = wait_until(
            lambda: (s := node.status())["storage"]["state"] != "ok" and s,
            60,
            "the write error to show",
        )
        assert st["storage"]["state"] == "write-failed" and not st["mining"], st
        time.sleep(2.0)
        held = node.status()
        assert held["height"] == st["height"]  # nothing accepted while the disk is full
        metrics = node.get("/metrics").decode()
        assert (
            "pouw_storage_ok 0.0" in metrics
            and 'pouw_storage_failures_total{kind="write-failed"} 1.0' in metrics
        )
        filler.unlink()
        assert node.proc is not None
        assert node.proc.wait(timeout=30) == 0, (
            node.log_tail()
        )  # stops cleanly once writes work again
        node.start().wait_ready()
        after = node.status()
        assert after["height"] >= held["height"], (after, held)
        assert node.get(f"/api/blocks/{held['height']}")["hash"] == held["best_hash"]
        assert node.stop() == 0
        log = node.log_path.read_text(errors="replace")
        assert sum("STORAGE:" in line for line in log.splitlines()) == 1, log[-3000:]
        assert "Traceback" not in log, log[-3000:]
        print(
            f"\ndisk full at height {held['height']}; after space returned and a restart: "
            f"height {after['height']}, no block lost"
        )
    finally:
        node.shut_down(timeout=20)
        subprocess.run(["umount", "-l", str(disk)], check=False)
