"""`nanoclaw run` with WhatsApp on the stand-in core, for the contract items that kill the service.

`python -m tests.whatsapp_service run --no-worker`: the service's own
entry point, after pointing the WhatsApp channel at a stand-in core
(tests/whatsapp_core_stub.py) whose events and sends go through the folder
named by `WA_STANDIN_DIR`, so the test process plays WhatsApp across a
kill -9 and a restart.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from nanoclaw import cli
from router.channels import whatsapp
from tests import whatsapp_core_stub as wa


def main() -> int:
    core = wa.Core(spool=Path(os.environ["WA_STANDIN_DIR"]))
    whatsapp.new_client = wa.client_on(core)
    whatsapp.linked_devices = wa.devices_of(core)
    return cli.main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
