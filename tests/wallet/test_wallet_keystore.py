"""The encrypted key store: round trip, wrong passwords, file mode, atomic writes, hostile files."""

from __future__ import annotations

import json
import os
import stat

import pytest
from wallet_kit import PASSWORD, TEST_SCRYPT_N

from chain.address import address_of, format_address
from chain.keys import PrivateKey
from p2p.wallet import keystore as ks
from p2p.wallet.keystore import (
    DEFAULT_SCRYPT_N,
    KeyFile,
    Keystore,
    KeystoreError,
    WalletExistsError,
    WalletNotFoundError,
    WrongPasswordError,
    decrypt_key,
    encrypt_key,
    scrypt_params,
    write_atomic,
)


def test_round_trip_and_file_format(tmp_path):
    key = PrivateKey.generate()
    store = Keystore(tmp_path / "w")
    entry = store.create("alice", key, PASSWORD, TEST_SCRYPT_N)
    assert entry.path == tmp_path / "w" / "alice.json"
    assert entry.keyfile.address == format_address(address_of(key.public_key()))
    data = json.loads(entry.path.read_text())
    assert (
        data["format"] == "pouw-keystore"
        and data["version"] == 1
        and data["address"] == entry.keyfile.address
    )
    crypto = data["crypto"]
    assert crypto["cipher"] == "aes-256-gcm" and crypto["kdf"] == "scrypt"
    assert crypto["kdfparams"] == {
        "n": TEST_SCRYPT_N,
        "r": 8,
        "p": 1,
        "dklen": 32,
        "salt": crypto["kdfparams"]["salt"],
    }
    assert (
        len(bytes.fromhex(crypto["kdfparams"]["salt"])) == 32
        and len(bytes.fromhex(crypto["nonce"])) == 12
    )
    assert key.to_bytes().hex() not in entry.path.read_text()  # the seed is not stored in the clear
    loaded, again = store.unlock("alice", PASSWORD)
    assert again.to_bytes() == key.to_bytes() and loaded.keyfile == entry.keyfile
    assert [e.name for e in store.entries()] == ["alice"]
    # Two encryptions of one key differ (fresh salt and nonce) and both open.
    other = encrypt_key(key, PASSWORD, TEST_SCRYPT_N)
    assert other.kdf.salt != entry.keyfile.kdf.salt and other.ciphertext != entry.keyfile.ciphertext
    assert decrypt_key(other, PASSWORD).to_bytes() == key.to_bytes()


def test_wrong_password_raises_and_never_touches_the_file(tmp_path):
    store = Keystore(tmp_path)
    entry = store.create("k", PrivateKey.generate(), PASSWORD, TEST_SCRYPT_N)
    before = entry.path.read_bytes()
    st = entry.path.stat()
    for wrong in ("", "x", PASSWORD + " ", PASSWORD.upper()):
        with pytest.raises(WrongPasswordError, match="wrong password"):
            store.unlock("k", wrong)
    assert entry.path.read_bytes() == before
    after = entry.path.stat()
    assert (after.st_mtime_ns, after.st_size, after.st_ino) == (
        st.st_mtime_ns,
        st.st_size,
        st.st_ino,
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["k.json"]  # no temporary or backup files


def test_file_and_directory_modes(tmp_path):
    old = os.umask(0o000)  # even a permissive umask gives 0600
    try:
        entry = Keystore(tmp_path / "new" / "dir").create(
            "m", PrivateKey.generate(), PASSWORD, TEST_SCRYPT_N
        )
    finally:
        os.umask(old)
    assert stat.S_IMODE(entry.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(entry.path.parent.stat().st_mode) == 0o700


def test_create_never_overwrites_a_key(tmp_path):
    store = Keystore(tmp_path)
    first = store.create("same", PrivateKey.generate(), PASSWORD, TEST_SCRYPT_N)
    before = first.path.read_bytes()
    with pytest.raises(WalletExistsError):
        store.create("same", PrivateKey.generate(), PASSWORD, TEST_SCRYPT_N)
    # Even when the existence check is raced, the hard link refuses to replace the file.
    with pytest.raises(FileExistsError):
        write_atomic(first.path, b"other", overwrite=False)
    assert first.path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["same.json"]


def test_atomic_write_leaves_no_partial_file_when_interrupted(tmp_path, monkeypatch):
    target = tmp_path / "key.json"

    def crash(fd):
        raise OSError("disk on fire")

    monkeypatch.setattr(ks.os, "fsync", crash)
    with pytest.raises(OSError, match="disk on fire"):
        write_atomic(target, b"x" * 1000)
    assert list(tmp_path.iterdir()) == []  # neither the target nor a temporary file
    monkeypatch.undo()
    write_atomic(target, b"old")
    monkeypatch.setattr(
        ks.os, "replace", lambda *a: (_ for _ in ()).throw(OSError("rename failed"))
    )
    with pytest.raises(OSError, match="rename failed"):
        write_atomic(target, b"new", overwrite=True)
    monkeypatch.undo()
    assert target.read_bytes() == b"old" and sorted(p.name for p in tmp_path.iterdir()) == [
        "key.json"
    ]
    write_atomic(target, b"new", overwrite=True)
    assert target.read_bytes() == b"new" and stat.S_IMODE(target.stat().st_mode) == 0o600


def test_altered_header_fails_like_a_wrong_password(tmp_path):
    store = Keystore(tmp_path)
    entry = store.create("a", PrivateKey.generate(), PASSWORD, TEST_SCRYPT_N)
    other = format_address(address_of(PrivateKey.generate().public_key()))
    data = json.loads(entry.path.read_text())
    for change in (
        lambda d: d.__setitem__("address", other),  # a swapped address is authenticated data
        lambda d: d["crypto"]["kdfparams"].__setitem__("n", TEST_SCRYPT_N * 2),
        lambda d: d["crypto"].__setitem__("ciphertext", "00" + d["crypto"]["ciphertext"][2:]),
    ):
        tampered = json.loads(json.dumps(data))
        change(tampered)
        with pytest.raises(WrongPasswordError):
            decrypt_key(KeyFile.from_json(tampered), PASSWORD)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.__setitem__("version", 3), "version"),
        (lambda d: d.__setitem__("format", "other"), "format"),
        (lambda d: d.__setitem__("address", "pwnotanaddress"), "address"),
        (lambda d: d["crypto"].__setitem__("cipher", "aes-128-ctr"), "cipher"),
        (
            lambda d: d["crypto"]["kdfparams"].__setitem__("n", 1 << 30),
            "power of two",
        ),  # a memory bomb is refused
        (lambda d: d["crypto"]["kdfparams"].__setitem__("n", 3000), "power of two"),
        (lambda d: d["crypto"]["kdfparams"].__setitem__("r", 10_000), "r and p"),
        (lambda d: d["crypto"].__setitem__("nonce", "00"), "nonce"),
        (lambda d: d["crypto"].__setitem__("ciphertext", "zz"), "ciphertext"),
    ],
)
def test_malformed_key_files_are_refused_naming_the_field(tmp_path, change, message):
    store = Keystore(tmp_path)
    entry = store.create("a", PrivateKey.generate(), PASSWORD, TEST_SCRYPT_N)
    data = json.loads(entry.path.read_text())
    change(data)
    entry.path.write_text(json.dumps(data))
    with pytest.raises(KeystoreError, match=message):
        store.load("a")
    assert store.entries() == []  # listed wallets skip unreadable files


def test_default_cost_names_and_missing_wallets(tmp_path, monkeypatch):
    monkeypatch.delenv("POUW_WALLET_SCRYPT_N", raising=False)
    assert scrypt_params().n == DEFAULT_SCRYPT_N == 1 << 17
    monkeypatch.setenv("POUW_WALLET_SCRYPT_N", "4096")
    assert scrypt_params().n == 4096
    with pytest.raises(KeystoreError, match="power of two"):
        scrypt_params(100)
    store = Keystore(tmp_path)
    with pytest.raises(WalletNotFoundError, match="no wallet named 'ghost'"):
        store.load("ghost")
    for bad in ("", "../evil", "a/b", ".hidden", "x" * 65):
        with pytest.raises(KeystoreError, match="wallet name"):
            store.path_for(bad)
    with pytest.raises(KeystoreError, match="empty"):
        encrypt_key(PrivateKey.generate(), "", TEST_SCRYPT_N)
