import os
from pathlib import Path

# Reference models pretrained by the tests go to a cache inside the checkout (ignored by git), never the user's.
os.environ.setdefault("SANDBOX_CACHE", str(Path(__file__).resolve().parents[1] / ".pytest_cache" / "sandbox-models"))
