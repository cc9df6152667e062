"""Where the project keeps caches and outputs; every location can be set from the environment."""

import os
from pathlib import Path


def cache_root() -> Path:
    """The explicit cache folder: `$HIPROMPT_CACHE`, else `$XDG_CACHE_HOME/hiprompt`, else
    `~/.cache/hiprompt`. Never the working directory."""
    if os.environ.get("HIPROMPT_CACHE"):
        return Path(os.environ["HIPROMPT_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "hiprompt"
