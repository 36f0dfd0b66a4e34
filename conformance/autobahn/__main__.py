"""`python -m conformance.autobahn`: see the package docstring."""
import sys

from conformance.autobahn.run import main

sys.exit(main())
