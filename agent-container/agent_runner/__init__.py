"""The agent runner: the program every agent container runs.

It reads one JSON request on stdin, runs the agent (the Claude Agent SDK, or
the deterministic `scripted` provider used by tests), and answers with
marker-framed JSON on stdout. It uses only the standard library and
claude-agent-sdk, because that is all the image's Python has.
"""
