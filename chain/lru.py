"""A bounded map that forgets the least recently used entry: the node's in-memory caches."""

from collections import OrderedDict
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")
MISSING = object()  # what `get` returns for a key not held (values themselves may be None)


class LRU(Generic[K, V]):
    """A dict of at most `size` entries that forgets the least recently used one."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.data: OrderedDict[K, V] = OrderedDict()

    def __len__(self) -> int:
        return len(self.data)

    def __contains__(self, key: object) -> bool:
        return key in self.data

    def get(self, key: K) -> object:
        """The value, now the most recently used, or MISSING."""
        value = self.data.get(key, MISSING)
        if value is not MISSING:
            self.data.move_to_end(key)
        return value

    def put(self, key: K, value: V) -> None:
        self.data[key] = value
        self.data.move_to_end(key)
        if len(self.data) > self.size:
            self.data.popitem(last=False)
