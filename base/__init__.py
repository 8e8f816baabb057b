"""The ground floor: settings, fault points, logging, time formats and descriptor-safe file operations.

Everything else imports from here; nothing here imports anything of ours above it.
"""
