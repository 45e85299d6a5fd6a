"""The prompts as a person meets them: a real `pouw` process on a pseudo-terminal (pexpect).

Creating a wallet (password length and strength feedback, the phrase shown once, words asked
back), three tries at a password prompt, and on a real node: the send guards, the fee estimate
shown before the confirmation, and following a task with Ctrl-C.
"""

from __future__ import annotations

import os
import re
import sys

import pexpect
import pytest
from framework import REPO, wait_until
from wallet_kit import TEST_SCRYPT_N

STRONG = "plum gravel otter lantern"
COIN = 100_000_000


def _env(wallet_dir) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("POUW_")}
    env.update(
        POUW_WALLET_DIR=str(wallet_dir),
        POUW_WALLET_SCRYPT_N=str(TEST_SCRYPT_N),
        COLUMNS="120",
        TERM="dumb",
    )
    return env


def spawn(wallet_dir, *args: str, timeout: float = 30) -> pexpect.spawn:
    """`pouw ARGS...` on a fresh pseudo-terminal (its controlling terminal: getpass and /dev/tty
    work)."""
    return pexpect.spawn(
        sys.executable,
        ["-m", "p2p.cli", *args],
        cwd=str(REPO),
        env=_env(wallet_dir),
        encoding="utf-8",
        timeout=timeout,
        dimensions=(40, 120),
    )


def finish(child: pexpect.spawn) -> int:
    child.expect(pexpect.EOF)
    child.close()
    return child.exitstatus


def create_wallet(wallet_dir, name: str) -> tuple[str, list[str]]:
    """Create a wallet the way a person does; returns (address, phrase words)."""
    child = spawn(wallet_dir, "wallet", "create", "-w", name)
    child.expect("New password for wallet")
    child.sendline(STRONG)
    child.expect("very strong")
    child.expect("Repeat the password: ")
    child.sendline(STRONG)
    child.expect(r"press Enter: ")
    words = re.findall(r"\d+\. ([a-z]+)", child.before)
    assert len(words) == 24
    child.sendline("")
    for _ in range(3):
        child.expect(r"Word #(\d+): ")
        child.sendline(words[int(child.match.group(1)) - 1])
    child.expect(r"wallet '\w+': (pw[a-z0-9]+)")
    address = child.match.group(1)
    assert finish(child) == 0
    return address, words


def test_create_password_feedback_phrase_confirmation_and_restore(tmp_path):
    wallet_dir = tmp_path / "wallet"
    child = spawn(wallet_dir, "wallet", "create", "-w", "me")
    child.expect("New password for wallet 'me': ")
    child.sendline("abc1234")  # 7 characters: refused, with advice
    child.expect(r"the password has 7 characters; use at least 8 .*\(2 tries left\)")
    child.expect("New password")
    child.sendline("password")  # 8 characters, but the most common password there is
    child.expect(
        r"password strength: very weak \(0/4\).*Pick one that is harder to guess \(1 try left\)"
    )
    child.expect("New password")
    child.sendline(STRONG)
    child.expect(r"password strength: very strong \(4/4\)")
    child.expect("Repeat the password: ")
    child.sendline(STRONG)
    child.expect(r"Recovery phrase of wallet 'me' \(BIP39, 24 English words\):")
    child.expect(
        r"Derivation: SLIP-0010 Ed25519 keys from the BIP39 seed, path m/44'/1'/0'/0'/i' for "
        r"address i"
    )
    words = re.findall(r"\d+\. ([a-z]+)", child.before)
    assert len(words) == 24
    child.expect(r"Address 0:  (pw[a-z0-9]+)")
    shown_address = child.match.group(1)
    child.expect("press Enter: ")
    child.sendline("")
    # A wrong word is pointed out and asked again; the right ones (four-letter abbreviations do)
    # pass.
    child.expect(r"Word #(\d+): ")
    pos = int(child.match.group(1))
    child.sendline("zzzz")
    child.expect(f"that is not word #{pos}; look at your copy again")
    child.expect(rf"Word #{pos}: ")
    child.sendline(words[pos - 1][:4])
    for _ in range(2):
        child.expect(r"Word #(\d+): ")
        child.sendline(words[int(child.match.group(1)) - 1])
    child.expect("The copy checks out.")
    child.expect(r"wallet 'me': (pw[a-z0-9]+)")
    assert child.match.group(1) == shown_address
    assert finish(child) == 0
    assert (wallet_dir / "me.json").exists()

    # The same phrase, typed at the restore prompt (one typo first), in another directory: the same
    # address.
    other = tmp_path / "other"
    child = spawn(other, "wallet", "restore", "-w", "again", "--no-scan")
    child.expect(r"Recovery phrase \(12 or 24 words\): ")
    child.sendline(" ".join(words[:23] + ["notaword"]))
    child.expect(
        "word 24, 'notaword', is not in the BIP39 English word list.*; type the phrase again"
    )
    child.expect(r"Recovery phrase \(12 or 24 words\): ")
    child.sendline(" ".join(words))
    child.expect("New password for wallet 'again': ")
    child.sendline(STRONG + " too")
    child.expect("Repeat the password: ")
    child.sendline(STRONG + " too")
    child.expect(r"wallet 'again': (pw[a-z0-9]+)")
    assert child.match.group(1) == shown_address
    assert finish(child) == 0

    # Three wrong words end it and nothing is written.
    child = spawn(tmp_path / "third", "wallet", "create", "-w", "x")
    child.expect("New password")
    child.sendline(STRONG)
    child.expect("Repeat the password: ")
    child.sendline(STRONG)
    child.expect("press Enter: ")
    child.sendline("")
    for _ in range(3):
        child.expect(r"Word #\d+: ")
        child.sendline("zoo zoo")
    child.expect("three wrong words: nothing was written")
    assert finish(child) == 2
    assert not (tmp_path / "third" / "x.json").exists()


def test_three_tries_at_the_password_prompt(tmp_path):
    wallet_dir = tmp_path / "wallet"
    create_wallet(wallet_dir, "k")
    before = (wallet_dir / "k.json").read_bytes()
    child = spawn(wallet_dir, "wallet", "backup", "-w", "k")
    for left in ("2 tries left", "1 try left"):
        child.expect(r"Password for wallet 'k' \(pw[a-z0-9]+\): ")
        child.sendline("not the password")
        child.expect(f"wrong password; {left}")
    child.expect("Password for wallet 'k'")
    child.sendline("still not it")
    child.expect(r"pouw: error: wrong password \(or the key file was altered\) \(3 tries\)")
    assert finish(child) == 3
    # Wrong once, then right: it goes on.
    child = spawn(wallet_dir, "wallet", "backup", "-w", "k")
    child.expect("Password for wallet 'k'")
    child.sendline("typo")
    child.expect("wrong password; 2 tries left")
    child.sendline(STRONG)
    child.expect(r"Derivation: SLIP-0010 Ed25519 .* m/44'/1'/0'/0'/i'")
    assert finish(child) == 0
    assert (wallet_dir / "k.json").read_bytes() == before


@pytest.mark.integration
def test_send_guards_estimate_confirmation_and_following_a_task(tmp_path, start_node):
    wallet_dir = tmp_path / "wallet"
    payer, _ = create_wallet(wallet_dir, "payer")
    node = start_node(payer)
    url = node.api_url
    wait_until(
        lambda: node.get(f"/api/accounts/{payer}")["balance"] >= 5 * COIN,
        60,
        "rewards mined to the payer",
    )
    me = ["-w", "payer", "--node", url]

    # A fee 200x the amount is stopped before any prompt; so is a fee under the minimum, naming it.
    child = spawn(wallet_dir, "wallet", "send", payer, "0.5", "--fee", "100", *me)
    child.expect(
        r"pouw: error: --fee 100 POUW is more than 1 POUW \(the node's estimate is 0\.0000\d+ "
        r"POUW\); pass --yes"
    )
    assert finish(child) == 13
    child = spawn(wallet_dir, "wallet", "send", payer, "0.5", "--fee", "0", *me)
    child.expect(
        r"below the node's minimum relay fee of 0\.0000\d+ POUW for this transaction \(\d+ bytes "
        r"at 5 base units per byte\)"
    )
    assert finish(child) == 2

    # A plain send shows the estimate and asks; "n" sends nothing.
    child = spawn(wallet_dir, "wallet", "send", payer, "0.5", *me)
    child.expect(rf"send 0\.5 POUW to {payer}")
    child.expect(
        r"fee (0\.0000\d+) POUW \(the node's estimate: 5 base units per byte x (\d+) bytes; its "
        r"minimum is"
    )
    fee, size = child.match.group(1), int(child.match.group(2))
    assert round(float(fee) * COIN) == 5 * size
    child.expect(r"Send\? \[y/N\] ")
    child.sendline("n")
    child.expect("pouw: error: not sent")
    assert finish(child) == 2
    assert node.get(f"/api/accounts/{payer}")["pending_transactions"] == 0
    # "y", then the password (wrong once: a second try), and it is sent.
    child = spawn(wallet_dir, "wallet", "send", payer, "0.5", *me)
    child.expect(r"Send\? \[y/N\] ")
    child.sendline("y")
    child.expect("Password for wallet 'payer'")
    child.sendline("wrong one")
    child.expect("wrong password; 2 tries left")
    child.sendline(STRONG)
    child.expect(rf"sent 0\.5 POUW to {payer} \(fee {fee}, nonce \d+\)")
    assert finish(child) == 0

    # A long training task, followed on the terminal: the bar moves; Ctrl-C stops following, not the
    # task.
    child = spawn(
        wallet_dir,
        "task",
        "submit",
        "train",
        "--steps",
        "20000",
        "--batch-size",
        "16",
        "--image-size",
        "16",
        "--max-objects",
        "2",
        "--bounty",
        "1",
        "--yes",
        *me,
    )
    child.expect("Password for wallet 'payer'")
    child.sendline(STRONG)
    child.expect(r"task id ([0-9a-f]{64})")
    task_id = child.match.group(1)
    child.expect(rf"follow it with: pouw task status {task_id[:12]} --follow")
    assert finish(child) == 0
    child = spawn(
        wallet_dir,
        "task",
        "status",
        task_id[:8],
        "--follow",
        "--interval",
        "0.5",
        "--node",
        url,
        timeout=60,
    )
    child.expect(rf"task {task_id[:8]} +\d+%\|")  # tqdm's bar in units
    child.expect(r"/10000 units \[")
    wait_until(
        lambda: node.get(f"/api/tasks/{task_id}")["units_done"] > 0,
        60,
        "the first units of the task",
    )
    child.expect(
        r"\], open, being worked on; \d+ blocks?; held-out \d+\.\d% \(step \d+\)", timeout=60
    )
    child.sendcontrol("c")
    child.expect(
        rf"stopped following task {task_id} .*the task goes on: pouw task status {task_id[:12]} "
        r"--follow"
    )
    assert finish(child) == 130
    assert node.get(f"/api/tasks/{task_id}")["status"] == "open"
