"""The rules: what the assistant decides, independent of how it runs.

Triggers, message windows, the prompt, groups, schedules, the sender and
mount allowlists, egress policy, failure kinds, budgets and notices, and the
layout of a group's IPC folder. Router and jobs both use them; they use
only the base and the event log.
"""
