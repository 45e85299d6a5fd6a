"""Names for the byte strings the chain passes around, so a signature says which one it takes.

Each is `bytes` at run time (typing.NewType: no cost, no change to any encoding); a type checker
keeps them apart, so a block hash cannot be passed where an address is wanted. Values get their
type where they are made (a hash function, a decoder, `address_of`) and keep it from there."""

from typing import NewType

BlockHash = NewType("BlockHash", bytes)  # 32 bytes: the hash of a block's unsigned header
TxId = NewType("TxId", bytes)  # 32 bytes: the hash of a transaction's encoding
TaskId = NewType("TaskId", bytes)  # 32 bytes: the txid of the transaction that submitted the task
Address = NewType("Address", bytes)  # 20 bytes: the hash of a public key (chain/address.py)
RawPublicKey = NewType("RawPublicKey", bytes)  # 32 bytes: an Ed25519 public key as it is encoded
