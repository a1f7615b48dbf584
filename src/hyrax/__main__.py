"""``python -m hyrax`` is the ``hyrax`` command."""

import sys

from hyrax.cli import main

sys.exit(main())
