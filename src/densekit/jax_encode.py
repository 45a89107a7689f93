"""``python -m densekit.jax_encode``: the jax-encode command under its launcher-friendly name."""

import sys

from densekit.commands import run_guarded
from densekit.commands.jax_encode import main

if __name__ == "__main__":
    sys.exit(run_guarded(main))
