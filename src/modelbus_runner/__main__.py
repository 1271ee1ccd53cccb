"""``python -m modelbus_runner ENTRYPOINT [--load MODULE:FN] [--batch MODULE:FN]``."""

import sys

from modelbus_runner.loop import main

sys.exit(main())
