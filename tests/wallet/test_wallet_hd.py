"""HD wallets: BIP39 and SLIP-0010 against their published test vectors, phrase checks, the HD key
file (round trip, tampering, new addresses), and a phrase round trip on a real node: create,
wipe the wallet directory, restore from the phrase, same addresses and the same balance."""

from __future__ import annotations

import json
import shutil

import pytest
from framework import wait_until
from wallet_kit import PASSWORD, TEST_SCRYPT_N

WALLET_FILE, USAGE = 9, 2

# SLIP-0010, "Test vector 1 for ed25519" and "Test vector 2 for ed25519": (path, chain code, private
# key).
SLIP10_VECTORS = {
    "000102030405060708090a0b0c0d0e0f": [
        (
            (),
            "90046a93de5380a72b5e45010748567d5ea02bbf6522f979e05c0d8d8ca9fffb",
            "2b4be7f19ee27bbf30c667b642d5f4aa69fd169872f8fc3059c08ebae2eb19e7",
        ),
        (
            (0,),
            "8b59aa11380b624e81507a27fedda59fea6d0b779a778918a2fd3590e16e9c69",
            "68e0fe46dfb67e368c75379acec591dad19df3cde26e63b93a8e704f1dade7a3",
        ),
        (
            (0, 1, 2),
            "2e69929e00b5ab250f49c3fb1c12f252de4fed2c1db88387094a0f8c4c9ccd6c",
            "92a5b23c0b8a99e37d07df3fb9966917f5d06e02ddbd909c7e184371463e9fc9",
        ),
    ],
    (
        "fffcf9f6f3f0edeae7e4e1dedbd8d5d2cfccc9c6c3c0bdbab7b4b1aeaba8a5a29f9c99969390"
        "8d8a8784817e7b7875726f6c696663605d5a5754514e4b484542"
    ): [
        (
            (),
            "ef70a74db9c3a5af931b5fe73ed8e1a53464133654fd55e7a66f8570b8e33c3b",
            "171cb88b1b3c1db25add599712e36245d75bc65a1a5c9e18d76f9f2b1eab4012",
        ),
        (
            (0,),
            "0b78a3226f915c082bf118f83618a618ab6dec793752624cbeb622acb562862d",
            "1559eb2bbec5790b0c65d8693e4d0875b1747f4970ae8b650486ed7470845635",
        ),
        (
            (0, 2147483647, 1, 2147483646, 2),
            "5d70af781f3a37b829f0d060924d5e960bdc02e85423494afc0b1a41bbe196d4",
            "551d333177df541ad876a60ea71f00447931c0a9da16f227c11ea080d7391b8d",
        ),
    ],
}
ABANDON = "abandon " * 11 + "about"


def test_slip10_ed25519_published_vectors():
    from p2p.wallet.hd_wallet import slip10_derive

    for seed, rows in SLIP10_VECTORS.items():
        for path, chain_code, key in rows:
            k, c = slip10_derive(bytes.fromhex(seed), path)
            assert (c.hex(), k.hex()) == (chain_code, key), path


def test_bip39_vector_and_the_wallet_path():
    from p2p.wallet.hd_wallet import (
        PATH_TEMPLATE,
        derive_key,
        path_of,
        secret_from_phrase,
        slip10_derive,
    )

    # BIP39's first English vector (passphrase "TREZOR").
    s = secret_from_phrase(ABANDON, "TREZOR")
    assert s.seed.hex() == (
        "c55257c360c07c72029aebc1b53c05ed0362ada38ead3e3e9efa3708e53495531f09a6987599d18264c1e1c92f2cf141630c7a3c4ab7c81b2f001698e7463b04"
    )
    assert s.entropy == bytes(16) and s.passphrase and s.phrase == ABANDON
    assert PATH_TEMPLATE == "m/44'/1'/0'/0'/i'" and path_of(7) == "m/44'/1'/0'/0'/7'"
    # Address i is the SLIP-0010 key at m/44'/1'/0'/0'/i'; a passphrase gives other addresses.
    assert derive_key(s.seed, 3).to_bytes() == slip10_derive(s.seed, (44, 1, 0, 0, 3))[0]
    plain = secret_from_phrase(ABANDON)
    assert plain.address(0) != s.address(0) and plain.address(0) != plain.address(1)


def test_phrase_checks_name_the_problem():
    from p2p.wallet.hd_wallet import PhraseError, new_secret, normalize_phrase

    words = new_secret(12).words
    assert len(new_secret().words) == 24 and len(words) == 12
    # Case, commas, extra spaces and four-letter abbreviations are accepted.
    assert normalize_phrase("  " + ", ".join(w.upper() for w in words)) == " ".join(words)
    assert normalize_phrase(" ".join(w[:4] for w in words)) == " ".join(words)
    with pytest.raises(PhraseError, match="has 12 or 24 words; this has 11"):
        normalize_phrase(" ".join(words[:11]))
    with pytest.raises(
        PhraseError,
        match=r"word 3, 'abandx', is not in the BIP39 English word list \(did you mean 'abandon'",
    ):
        normalize_phrase(" ".join(words[:2] + ["abandx"] + words[3:]))
    from mnemonic import Mnemonic

    bip39 = Mnemonic("english")
    wrong_last = next(w for w in bip39.wordlist if not bip39.check(" ".join(words[:11] + [w])))
    with pytest.raises(PhraseError, match="checksum"):
        normalize_phrase(" ".join(words[:11] + [wrong_last]))


def test_hd_key_file_round_trip_new_addresses_and_tampering(tmp_path):
    from p2p.wallet.hd_wallet import secret_from_phrase
    from p2p.wallet.keystore import (
        KeyFile,
        Keystore,
        KeystoreError,
        WalletExistsError,
        WrongPasswordError,
        open_keyfile,
    )

    secret = secret_from_phrase(ABANDON, "extra")
    store = Keystore(tmp_path / "w")
    entry = store.create_hd("hd", secret, PASSWORD, scrypt_n=TEST_SCRYPT_N)
    data = json.loads(entry.path.read_text())
    assert (
        data["version"] == 2
        and data["hd"]["path"] == "m/44'/1'/0'/0'/i'"
        and data["hd"]["addresses"] == [secret.address(0)]
    )
    assert "SLIP-0010" in data["hd"]["derivation"] and data["hd"]["words"] == 12
    text = entry.path.read_text()
    assert secret.seed.hex() not in text and "abandon" not in text and "extra" not in text
    unlocked = open_keyfile(store.load("hd").keyfile, PASSWORD)
    assert unlocked.secret == secret and unlocked.first_key.to_bytes() == secret.key(0).to_bytes()
    # Two more addresses: the file is re-sealed under the same password and lists them.
    entry = store.save_addresses(
        entry, unlocked, (secret.address(0), secret.address(1), secret.address(2))
    )
    again = open_keyfile(store.load("hd").keyfile, PASSWORD)
    assert list(again.keys) == [secret.address(i) for i in range(3)]
    assert again.key_for(secret.address(2)).to_bytes() == secret.key(2).to_bytes()
    # The same phrase (same address 0) under another name is noticed.
    with pytest.raises(WalletExistsError, match="wallet 'hd' already holds this key"):
        store.create_hd("twin", secret, PASSWORD, scrypt_n=TEST_SCRYPT_N)
    # A swapped address (say, an attacker's receive address) fails like a wrong password.
    data = json.loads(entry.path.read_text())
    data["hd"]["addresses"][1] = secret_from_phrase(ABANDON).address(0)
    with pytest.raises(WrongPasswordError):
        open_keyfile(KeyFile.from_json(data), PASSWORD)
    for change, message in (
        (lambda d: d["hd"].__setitem__("path", "m/44'/0'/0'/0'/i'"), "hd.path"),
        (lambda d: d["hd"].__setitem__("words", 13), "hd.words"),
        (lambda d: d["hd"].__setitem__("addresses", []), "hd.addresses"),
        (lambda d: d.__setitem__("address", d["hd"]["addresses"][1]), "must be hd.addresses"),
        (lambda d: d.pop("hd"), "hd: missing"),
    ):
        bad = json.loads(entry.path.read_text())
        change(bad)
        with pytest.raises(ValueError, match=message):
            KeyFile.from_json(bad)
    with pytest.raises(KeystoreError, match="plain key"):
        plain = Keystore(tmp_path / "p")
        from chain.keys import PrivateKey

        e = plain.create("k", PrivateKey.generate(), PASSWORD, TEST_SCRYPT_N)
        plain.save_addresses(e, open_keyfile(e.keyfile, PASSWORD), e.keyfile.addresses)


def test_restore_errors_before_anything_is_written(pouw, wallet_env, tmp_path):
    made = pouw("wallet", "create", "-w", "a", "--words", "12", "--json").json()
    (tmp_path / "phrase").write_text(made["phrase"] + "\n")
    r = pouw("wallet", "restore", "-w", "b", "--phrase-file", tmp_path / "phrase", "--no-scan")
    assert r.code == WALLET_FILE and "wallet 'a' already holds this phrase" in r.err
    words = made["phrase"].split()
    (tmp_path / "typo").write_text(" ".join(words[:4] + ["xylophone"] + words[5:]))
    r = pouw("wallet", "restore", "-w", "b", "--phrase-file", tmp_path / "typo", "--no-scan")
    assert r.code == USAGE and "word 5, 'xylophone', is not in the BIP39 English word list" in r.err
    assert sorted(p.name for p in wallet_env.iterdir()) == ["a.json"]
    # With a passphrase it is another wallet (other addresses), so it is not a duplicate.
    (tmp_path / "pass").write_text("my extra word\n")
    r = pouw(
        "wallet",
        "restore",
        "-w",
        "b",
        "--phrase-file",
        tmp_path / "phrase",
        "--passphrase-file",
        tmp_path / "pass",
        "--no-scan",
        "--json",
    )
    assert r.code == 0 and r.json()["address"] != made["address"] and r.json()["passphrase"] is True
    r = pouw("wallet", "backup", "-w", "b", "--json")
    assert (
        r.json()["phrase"] == made["phrase"]
        and r.json()["passphrase"] is True
        and r.json()["path"] == "m/44'/1'/0'/0'/i'"
    )
    text = pouw("wallet", "backup", "-w", "b").out
    assert "m/44'/1'/0'/0'/i'" in text and "Passphrase: yes" in text and f" 1. {words[0]}" in text


@pytest.mark.integration
def test_phrase_round_trip_on_a_real_node(pouw, start_node, wallet_env, tmp_path):
    """Create, derive addresses, receive on some; wipe the wallet; restore: same addresses, same
    balance."""
    COIN = 100_000_000
    made = pouw("wallet", "create", "-w", "mine", "--json").json()
    phrase = made["phrase"]
    addresses = [made["address"]] + [
        pouw("wallet", "address", "-w", "mine", "--new", "--json").json()["address"]
        for _ in range(4)
    ]
    assert [
        pouw("wallet", "address", "--all", "-w", "mine", "--json").json()["addresses"][i]["path"]
        for i in (0, 4)
    ] == ["m/44'/1'/0'/0'/0'", "m/44'/1'/0'/0'/4'"]
    node = start_node(addresses[0])
    url = node.api_url

    def balance(*who: str) -> dict:
        r = pouw("wallet", "balance", *who, "--node", url, "--json")
        assert r.code == 0, r.err
        return r.json()

    wait_until(
        lambda: balance("-w", "mine")["balance"]["units"] >= 10 * COIN,
        60,
        "rewards mined to address 0",
    )
    # Address 2 receives; 1 and 3 stay unused; 4 receives too (a gap of one: within the gap limit of
    # 2).
    for i, amount in ((2, "1.25"), (4, "0.5")):
        r = pouw(
            "wallet",
            "send",
            addresses[i],
            amount,
            "-w",
            "mine",
            "--node",
            url,
            "--wait",
            "30",
            "--json",
        )
        assert r.code == 0, r.err
        assert r.json()["from"] == addresses[0]
    node.pause_mining()
    before = balance("-w", "mine")
    assert [a["address"] for a in before["addresses"]] == addresses
    assert [a["balance"]["units"] for a in before["addresses"]][1:] == [
        0,
        125_000_000,
        0,
        50_000_000,
    ]
    history = pouw(
        "wallet", "history", "-w", "mine", "--node", url, "--json", "--limit", "100"
    ).json()
    assert {e["address"] for e in history["items"]} == {addresses[0], addresses[2], addresses[4]}
    assert history["total"] == sum(
        pouw("wallet", "history", a, "--node", url, "--json").json()["total"] for a in addresses
    )

    # Wipe the wallet directory; restore from the phrase alone.
    shutil.rmtree(wallet_env)
    (tmp_path / "phrase.txt").write_text(phrase + "\n")
    r = pouw(
        "wallet",
        "restore",
        "-w",
        "back",
        "--phrase-file",
        tmp_path / "phrase.txt",
        "--gap-limit",
        "2",
        "--node",
        url,
        "--json",
    )
    assert r.code == 0, r.err
    restored = r.json()
    assert (
        restored["addresses"] == addresses
    )  # 0 .. 4: the last used is 4; 5 and 6 unused end the scan
    assert restored["scanned"] == 7
    after = balance("-w", "back")
    assert after["balance"] == before["balance"] and [a["balance"] for a in after["addresses"]] == [
        a["balance"] for a in before["addresses"]
    ]
    # The restored wallet signs for its addresses: address 2 pays.
    r = pouw(
        "wallet", "send", addresses[1], "1", "--from", "2", "-w", "back", "--node", url, "--json"
    )
    assert r.code == 0 and r.json()["from"] == addresses[2], r.err
    # A gap limit of 1 stops at the unused address 1: only address 0 comes back.
    shutil.rmtree(wallet_env)
    r = pouw(
        "wallet",
        "restore",
        "-w",
        "short",
        "--phrase-file",
        tmp_path / "phrase.txt",
        "--gap-limit",
        "1",
        "--node",
        url,
        "--json",
    )
    assert r.code == 0 and r.json()["addresses"] == addresses[:1]
