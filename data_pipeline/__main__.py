"""``python -m data_pipeline VERB ...``: an alias of ``pam data VERB ...``."""

import sys

from data_pipeline.cli import main

sys.exit(main())
