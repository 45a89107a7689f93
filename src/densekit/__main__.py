"""``python -m densekit <command>``: the same dispatcher as the ``densekit`` script."""

import sys

from densekit.commands import main

sys.exit(main())
