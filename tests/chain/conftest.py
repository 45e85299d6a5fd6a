import sys
from pathlib import Path

# The chain tests share a deterministic chain builder that lives beside them (also used by the
# crash-test child process), whatever pytest import mode is in use.
sys.path.insert(0, str(Path(__file__).parent))
