"""`nanoclaw why MESSAGE`: one message's story, a screen for people, `--json` for scripts.

The story is gathered by nanoclaw/why.py; this file only lays it out.
"""

from __future__ import annotations

import argparse
import sys
from typing import TextIO

import msgspec

from base.config import Settings
from events import EventLog
from nanoclaw import why


def _tokens(tokens: why.Tokens) -> str:
    failed = f" ({tokens.failed} failed)" if tokens.failed else ""
    return (f"{tokens.calls} call(s){failed}, {tokens.input_tokens:,} input and {tokens.output_tokens:,} output "
            f"tokens, cache {tokens.cache_creation_input_tokens:,} written and {tokens.cache_read_input_tokens:,} read")


def _run(run: why.Run, w) -> None:
    ended = "still running" if run.status == "running" else \
        f"{run.status} at {run.finished_at}" + (f" after {run.duration_ms:,} ms" if run.duration_ms else "")
    w(f"run {run.run_id}  {'first try' if run.retry == 0 else f'retry {run.retry}'}, started {run.started_at}, "
      f"{ended}\n")
    w(f"  how       {run.how}\n")
    if run.error:
        w(f"  error     {run.error}\n")
    for output in run.outputs:
        said = output.text if output.status == "success" else output.error
        w(f"  output {output.index:<3}{output.status} at {output.at}: {said or '(nothing to send)'}\n")
    for reply in run.replies:
        done = {"sent": f"sent at {reply.done_at}, attempt {reply.attempts}",
                "failed": f"FAILED after {reply.attempts} attempt(s): {reply.reason}"}.get(reply.state, "queued")
        w(f"  reply     {reply.outbound_id} {done}: {reply.text}\n")
    for told in run.notices:
        w(f"  told      {told.outbound_id} ({told.state}): {told.text}\n")
    if run.model.calls:
        w(f"  model     {_tokens(run.model)}\n")
    if run.then:
        w(f"  then      {run.then}\n")


def render(story: why.Story, out: TextIO) -> None:
    w = out.write
    m = story.message
    who = "you" if m.is_from_me else f"{m.sender_name} ({m.sender})"
    w(f"message   seq {m.seq} at {m.at} in {m.chat_jid} from {who}" + (f", key {m.key}" if m.key else "") + "\n")
    w(f"          {m.text!r}\n")
    g = story.group
    w(f"group     {g.folder} ({g.name}){', main' if g.is_main else ''}\n" if g
      else "group     not a registered group\n")
    w(f"woke      {'yes' if story.wake.woke else 'no'}: {story.wake.reason}\n")
    for run in story.runs:
        _run(run, w)
    if sum(run.model.calls > 0 for run in story.runs) > 1:
        w(f"model     all runs: {_tokens(story.model)}\n")
    w(f"now       {story.outcome}\n")
    if story.matches > 1:
        shown = ", ".join(str(seq) for seq in story.other_matches)
        more = "" if len(story.other_matches) == story.matches - 1 else ", ..."
        w(f"matches   {story.matches - 1} older message(s) also match: seqs {shown}{more} "
          "(nanoclaw why SEQ tells theirs)\n")


def cmd_why(settings: Settings, args: argparse.Namespace) -> int:
    log = EventLog(settings.db_path, sync=settings.event_log_sync)
    try:
        story = why.tell(log, settings, args.message)
    except why.WhyError as exc:
        print(f"nanoclaw why: {exc}", file=sys.stderr)
        return 1
    finally:
        log.close()
    if args.json:
        sys.stdout.write(msgspec.json.encode(story).decode() + "\n")
    else:
        render(story, sys.stdout)
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("why", help="the story of one message: woke the agent or why not, runs, replies, tokens")
    p.add_argument("message", metavar="MESSAGE",
                   help="a seq, a message key (local:me:..., tg:123:456), or text to search (newest match)")
    p.add_argument("--json", action="store_true", help="one JSON object for scripts")
    p.set_defaults(handler=cmd_why)
