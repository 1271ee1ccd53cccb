"""``python -m modelbus.migrations "message"``: write the next schema revision."""

import sys

from modelbus.migrations import new_revision

if len(sys.argv) != 2:
    sys.exit('usage: python -m modelbus.migrations "what changed"')
new_revision(sys.argv[1])
