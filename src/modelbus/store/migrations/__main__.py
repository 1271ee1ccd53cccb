"""``python -m modelbus.store.migrations "message"``: write the next schema revision."""

import sys

from modelbus.store.migrations import new_revision

if len(sys.argv) != 2:
    sys.exit('usage: python -m modelbus.store.migrations "what changed"')
new_revision(sys.argv[1])
