"""Chat channels. Importing this package registers every installed channel."""

from router.channels import local  # noqa: F401  (registers itself)
from router.channels import telegram  # noqa: F401  (registers itself; skipped without a token)
