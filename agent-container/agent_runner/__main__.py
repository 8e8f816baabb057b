"""`python -m agent_runner`: the container's entrypoint."""

import sys

from agent_runner.main import main

sys.exit(main())
