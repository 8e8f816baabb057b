"""Chat channels. Importing this package registers every channel; each is skipped without its credentials.

Slack and Discord are declared here and imported only when their tokens are
set, WhatsApp only when a device was linked, so a service without them does
not load their client libraries.
"""

from router.channels import local  # noqa: F401  (registers itself)
from router.channels import registry, telegram, whatsapp_link  # noqa: F401  (telegram registers itself)

registry.declare("slack", "router.channels.slack", credentials=("SLACK_BOT_TOKEN", "SLACK_APP_TOKEN"),
                 jid_prefix="slack:")
registry.declare("discord", "router.channels.discord", credentials=("DISCORD_BOT_TOKEN",), jid_prefix="dc:")
registry.declare("whatsapp", "router.channels.whatsapp", jid_prefix="wa:", present=whatsapp_link.has_session,
                 how=f"no device linked: run `{whatsapp_link.LOGIN_COMMAND}`")
