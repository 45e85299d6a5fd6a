"""`pouw wallet` / `pouw task` without a node: key commands, and each user error's message and
exit code."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from framework import REPO, free_port
from wallet_kit import PASSWORD, TEST_SCRYPT_N

# Exit codes, as docs/wallet.md lists them.
USAGE, WRONG_PASSWORD, INSUFFICIENT, BAD_ADDRESS, UNREACHABLE, REJECTED, BAD_SPEC, WALLET_FILE = (
    2,
    3,
    4,
    5,
    6,
    7,
    8,
    9,
)


def test_create_list_address_export_import(pouw, wallet_env, tmp_path):
    r = pouw("wallet", "create", "-w", "alice", "--json")
    assert r.code == 0, r.err
    alice = r.json()
    assert (
        alice["name"] == "alice"
        and alice["address"].startswith("pw")
        and alice["file"] == str(wallet_env / "alice.json")
    )
    assert (
        len(alice["phrase"].split()) == 24 and alice["path"] == "m/44'/1'/0'/0'/i'"
    )  # no terminal: the phrase is output
    assert pouw("wallet", "address", "-w", "alice").out.strip() == alice["address"]
    assert pouw("wallet", "create", "-w", "bob").code == 0
    listing = pouw("wallet", "list", "--json").json()
    assert [(w["name"], w["kind"]) for w in listing["wallets"]] == [("alice", "hd"), ("bob", "hd")]

    r = pouw("wallet", "export", "-w", "alice", "--json")
    assert r.code == 0
    key_hex = r.json()["private_key"]
    assert len(key_hex) == 64 and r.json()["path"] == "m/44'/1'/0'/0'/0'"
    (tmp_path / "key.hex").write_text(key_hex + "\n")
    (tmp_path / "pw").write_text("another password\n")
    # The same key under a second name in the same directory is noticed, and refused naming the
    # wallet.
    r = pouw(
        "wallet",
        "import",
        "-w",
        "copy",
        "--key-file",
        tmp_path / "key.hex",
        "--password-file",
        tmp_path / "pw",
    )
    assert (
        r.code == WALLET_FILE
        and "wallet 'alice' already holds this key" in r.err
        and not (wallet_env / "copy.json").exists()
    )
    # Plain-key wallets keep working: imported into another directory, it opens with its own
    # password.
    other = ["--wallet-dir", tmp_path / "other"]
    r = pouw(
        "wallet",
        "import",
        "-w",
        "copy",
        *other,
        "--key-file",
        tmp_path / "key.hex",
        "--password-file",
        tmp_path / "pw",
        "--json",
    )
    assert r.code == 0 and r.json()["address"] == alice["address"]
    assert pouw("wallet", "list", *other, "--json").json()["wallets"][0]["kind"] == "key"
    assert (
        pouw(
            "wallet", "export", "-w", "copy", *other, "--password-file", tmp_path / "pw"
        ).out.strip()
        == key_hex
    )
    assert pouw("wallet", "export", "-w", "copy", *other).code == WRONG_PASSWORD
    r = pouw("wallet", "address", "-w", "copy", *other, "--new")
    assert r.code == USAGE and "plain key" in r.err

    # Names are never reused, and a bad key is refused before anything is written.
    r = pouw("wallet", "create", "-w", "alice")
    assert r.code == WALLET_FILE and "already exists" in r.err
    (tmp_path / "bad.hex").write_text("zz" * 32)
    r = pouw("wallet", "import", "-w", "bad", "--key-file", tmp_path / "bad.hex")
    assert r.code == USAGE and "64 hex digits" in r.err and not (wallet_env / "bad.json").exists()
    r = pouw("wallet", "create", "-w", "cheap", "--scrypt-n", "1000")
    assert r.code == USAGE and "power of two" in r.err
    r = pouw("wallet", "address", "-w", "nobody")
    assert r.code == WALLET_FILE and "no wallet named 'nobody'" in r.err and "alice" in r.err


def test_wrong_password_exit_code_and_key_file_untouched(pouw, wallet_env, tmp_path):
    assert pouw("wallet", "create", "-w", "k").code == 0
    path = wallet_env / "k.json"
    before, mtime = path.read_bytes(), path.stat().st_mtime_ns
    (tmp_path / "wrong").write_text("not the password\n")
    for args in (
        ("wallet", "export"),
        ("wallet", "send", "k", "1", "--node", f"127.0.0.1:{free_port()}"),
    ):
        r = pouw(*args, "-w", "k", "--password-file", tmp_path / "wrong")
        if "send" in args:
            assert r.code == UNREACHABLE  # the node is checked before the password is asked for
            continue
        assert r.code == WRONG_PASSWORD
        assert r.err.strip() == "pouw: error: wrong password (or the key file was altered)"
        assert r.out == ""
    r = pouw("wallet", "export", "-w", "k", "--password-file", tmp_path / "wrong", "--json")
    assert r.code == WRONG_PASSWORD and r.json() == {
        "error": "wrong password (or the key file was altered)",
        "kind": "wrong-password",
        "exit_code": WRONG_PASSWORD,
    }
    assert path.read_bytes() == before and path.stat().st_mtime_ns == mtime
    assert sorted(p.name for p in wallet_env.iterdir()) == ["k.json"]


def test_user_errors_are_one_line_with_distinct_codes(pouw, wallet_env):
    dead = f"http://127.0.0.1:{free_port()}"
    assert pouw("wallet", "create", "-w", "me").code == 0
    me = pouw("wallet", "address", "-w", "me").out.strip()
    typo = me[:-1] + ("a" if me[-1] != "a" else "b")
    cases = [
        # A mistyped address is caught by its checksum before any node is asked.
        (("wallet", "send", typo, "1", "--node", dead), BAD_ADDRESS, "bad checksum"),
        (("wallet", "send", "carol", "1", "--node", dead), BAD_ADDRESS, "neither an address"),
        (("wallet", "balance", typo, "--node", dead), BAD_ADDRESS, "bad checksum"),
        (("wallet", "send", me, "1.000000001", "--node", dead), USAGE, "more than 8 decimals"),
        (("wallet", "send", me, "-1", "--node", dead), USAGE, "plain decimal"),
        (
            ("wallet", "send", me, "1", "--node", dead),
            UNREACHABLE,
            f"cannot reach the node at {dead}",
        ),
        (("wallet", "balance", "--node", dead), UNREACHABLE, f"cannot reach the node at {dead}"),
        (("wallet", "history", "--node", dead), UNREACHABLE, dead),
        (("task", "status", "ab" * 32, "--node", dead), UNREACHABLE, dead),
        (("task", "status", "xyz", "--node", dead), USAGE, "64 hex digits"),
        (("task", "status", "abc", "--node", dead), USAGE, "prefix of at least 4"),
        # A task spec out of range is refused before anything is sent (the node is not even asked).
        (
            (
                "task",
                "submit",
                "render",
                "--count",
                "8",
                "--image-size",
                "8",
                "--bounty",
                "1",
                "--node",
                dead,
            ),
            BAD_SPEC,
            "render.image_size: 8 out of range 16 .. 128 (option --image-size)",
        ),
        (
            (
                "task",
                "submit",
                "train",
                "--steps",
                "10",
                "--lr",
                "0.0000001",
                "--bounty",
                "1",
                "--node",
                dead,
            ),
            BAD_SPEC,
            "train.lr",
        ),
        (
            (
                "task",
                "submit",
                "train",
                "--steps",
                "10",
                "--objective",
                "colour",
                "--bounty",
                "1",
                "--node",
                dead,
            ),
            BAD_SPEC,
            "train.objective",
        ),
        (
            (
                "task",
                "submit",
                "train",
                "--steps",
                "10",
                "--bounty",
                "1",
                "-w",
                "ghost",
                "--node",
                dead,
            ),
            WALLET_FILE,
            "no wallet named 'ghost'",
        ),
    ]
    for args, code, text in cases:
        takes_wallet = args[0] == "wallet" or args[1] == "submit"
        r = pouw(*args, "-w", "me") if takes_wallet and "-w" not in args else pouw(*args)
        assert r.code == code, (args, r)
        assert text in r.err, (args, r.err)
        assert len(r.err.strip().splitlines()) == 1 and r.err.startswith("pouw: error: "), r.err
    r = pouw("wallet", "balance", "--node", dead, "-w", "me", "--json")
    assert r.json()["kind"] == "node-unreachable" and r.json()["exit_code"] == UNREACHABLE


def test_console_entry_point_exit_code(wallet_env):
    """The same through a real `pouw` process: one line on stderr, the exit code as documented."""
    env = {
        **os.environ,
        "POUW_WALLET_DIR": str(wallet_env),
        "POUW_WALLET_SCRYPT_N": str(TEST_SCRYPT_N),
        "POUW_WALLET_PASSWORD": PASSWORD,
    }
    cmd = [sys.executable, "-m", "p2p.cli", "wallet", "create", "-w", "p", "--json"]
    created = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert created.returncode == 0, created.stderr
    address = json.loads(created.stdout)["address"]
    port = free_port()
    cmd = [
        sys.executable,
        "-m",
        "p2p.cli",
        "wallet",
        "send",
        address,
        "1",
        "-w",
        "p",
        "--node",
        f"127.0.0.1:{port}",
    ]
    r = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == UNREACHABLE
    assert r.stderr.strip().splitlines() == [
        f"pouw: error: cannot reach the node at http://127.0.0.1:{port} (Connection refused); is "
        "`pouw node` running? (--node URL)"
    ]
    # No terminal and no password source: a clear error, not a hang.
    env.pop("POUW_WALLET_PASSWORD")
    r = subprocess.run(
        [sys.executable, "-m", "p2p.cli", "wallet", "export", "-w", "p"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    assert r.returncode == USAGE and "no password" in r.stderr
    # A password piped on stdin is read when there is no terminal.
    r = subprocess.run(
        [sys.executable, "-m", "p2p.cli", "wallet", "export", "-w", "p"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        input=PASSWORD + "\n",
        start_new_session=True,
    )
    assert r.returncode == 0 and len(r.stdout.strip()) == 64


def test_node_url_option(monkeypatch):
    from p2p.wallet.client import DEFAULT_NODE_URL, resolve_node_url
    from p2p.wallet.errors import UserError

    monkeypatch.delenv("POUW_NODE", raising=False)
    assert (
        resolve_node_url(None) == DEFAULT_NODE_URL == "http://127.0.0.1:8080"
    )  # `pouw node --api`'s default
    assert resolve_node_url("10.0.0.5:9000") == "http://10.0.0.5:9000"
    assert resolve_node_url("https://node.example/") == "https://node.example"
    monkeypatch.setenv("POUW_NODE", "127.0.0.1:18080")
    assert resolve_node_url(None) == "http://127.0.0.1:18080"
    for bad in ("ftp://x", "http://", "http://host:port"):
        with pytest.raises(UserError, match="--node"):
            resolve_node_url(bad)
