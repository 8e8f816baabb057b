"""Chat channels. Importing this package registers every channel; each is skipped without its credentials.

Slack is declared here and imported only when its tokens are
set, so a service without it does not load its client library.
"""

from router.channels import local  # noqa: F401  (registers itself)
from router.channels import registry, telegram  # noqa: F401  (telegram registers itself)

registry.declare("slack", "router.channels.slack", credentials=("SLACK_BOT_TOKEN", "SLACK_APP_TOKEN"),
                 jid_prefix="slack:")
