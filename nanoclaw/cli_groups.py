"""`nanoclaw groups add|list|remove`: which chats the assistant serves."""

from __future__ import annotations

import argparse
import sys

from base.config import Settings
from events import EventLog, queries, types as t
from nanoclaw import show
from rules import groups
from rules.egress import DEFAULT_EGRESS, parse_policy, policy_of
from rules.mounts import AllowlistLoader, parse_mount_spec, validate_mounts


def egress_of(group: queries.Group) -> str:
    return policy_of(group.container_config)


def cmd_add(settings: Settings, args: argparse.Namespace) -> int:
    log = EventLog(settings.db_path, sync=settings.event_log_sync)
    try:
        group = groups.register_group(
            log, settings, jid=args.jid, name=args.name, folder=args.folder,
            trigger=args.trigger, requires_trigger=not args.no_trigger, is_main=args.main,
        )
    finally:
        log.close()
    if args.json:
        show.json_line(_as_dict(group))
        return 0
    kind = "main group" if group.is_main else "group"
    when = "every message" if group.is_main or not group.requires_trigger else f"messages starting with {group.trigger}"
    print(f"registered {kind} {group.name!r} ({group.jid}) in groups/{group.folder}/; "
          f"the assistant answers {when}")
    return 0


def cmd_list(settings: Settings, args: argparse.Namespace) -> int:
    log = EventLog(settings.db_path, sync=settings.event_log_sync)
    try:
        found = queries.list_groups(log)
    finally:
        log.close()
    if args.json:
        for group in found:
            show.json_line(_as_dict(group))
        return 0
    if not found:
        print("no groups yet: nanoclaw groups add local:me --name Me --folder main --main")
        return 0
    rows = [
        (g.folder, g.jid, "main" if g.is_main else "", g.trigger if g.requires_trigger and not g.is_main else "(none)",
         egress_of(g), g.name)
        for g in found
    ]
    show.table(("FOLDER", "JID", "ROLE", "TRIGGER", "EGRESS", "NAME"), rows)
    return 0


def cmd_remove(settings: Settings, args: argparse.Namespace) -> int:
    log = EventLog(settings.db_path, sync=settings.event_log_sync)
    try:
        group = groups.remove_group(log, args.group)
    finally:
        log.close()
    print(f"removed {group.name!r} ({group.jid}); groups/{group.folder}/ and its history are kept")
    if group.is_main:
        print("there is no main group now: add one with 'nanoclaw groups add ... --main'")
    return 0


def cmd_set(settings: Settings, args: argparse.Namespace) -> int:
    log = EventLog(settings.db_path, sync=settings.event_log_sync)
    try:
        current = queries.find_group(log, args.group)
        if current is None:
            raise groups.GroupError(f"no registered group has the JID or folder {args.group!r}")
        config = current.container_config or t.ContainerConfig()
        mounts, timeout, egress = config.additional_mounts, config.timeout_ms, config.egress
        budgets = {"daily_budget_usd": config.daily_budget_usd, "monthly_budget_usd": config.monthly_budget_usd}
        for name, given in (("daily_budget_usd", args.daily_budget), ("monthly_budget_usd", args.monthly_budget)):
            if given is not None:
                if not 0 <= given < 1_000_000:
                    raise groups.GroupError(f"a budget is from 0 (no cap) to 1,000,000 USD, not {given}")
                budgets[name] = given or None
        try:
            if args.no_mounts:
                mounts = []
            if args.mount:
                mounts = [parse_mount_spec(spec) for spec in args.mount]
            if args.egress is not None:
                egress = str(parse_policy(args.egress))
        except ValueError as exc:
            raise groups.GroupError(str(exc)) from exc
        if args.timeout is not None:
            timeout = None if args.timeout == 0 else int(args.timeout * 1000)
        keep_browser = config.keep_browser_session if args.browser_session is None else args.browser_session == "keep"
        changed = t.ContainerConfig(additional_mounts=mounts, timeout_ms=timeout, egress=egress,
                                    keep_browser_session=keep_browser, **budgets)
        group = groups.update_group(
            log, current.jid,
            name=args.name if args.name is not None else t.UNSET,
            trigger=args.trigger if args.trigger is not None else t.UNSET,
            requires_trigger=t.UNSET if args.requires_trigger is None else args.requires_trigger,
            container_config=changed if changed != config else t.UNSET,
        )
    finally:
        log.close()
    print(f"updated {group.name!r} ({group.jid}); egress {egress_of(group)}")
    accepted, rejected = validate_mounts(mounts, is_main=group.is_main, loader=AllowlistLoader(
        settings.mount_allowlist_path), home=settings.home, install_root=settings.root,
        local_chat_socket=settings.local_chat_socket, group=group.folder)
    for mount in accepted:
        print(f"  mount {mount.host_path} -> {mount.container_path}{' (read-only)' if mount.readonly else ''}")
    for rejection in rejected:
        print(f"  mount {rejection.request.host_path} will be refused: {rejection.reason}", file=sys.stderr)
    return 0


def _as_dict(group: queries.Group) -> dict:
    return {
        "jid": group.jid, "name": group.name, "folder": group.folder, "trigger": group.trigger,
        "requires_trigger": group.requires_trigger, "is_main": group.is_main,
        "container_config": group.container_config, "egress": egress_of(group), "added_at": group.added_at,
    }


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("groups", help="register, list and remove groups")
    gsub = p.add_subparsers(dest="groups_command", required=True, metavar="COMMAND")

    add = gsub.add_parser("add", help="serve a chat as a group with its own folder")
    add.add_argument("jid", help="the chat id, such as local:me or tg:-1001234567890")
    add.add_argument("--name", required=True, help="a display name")
    add.add_argument("--folder", required=True, help="folder under groups/ (letters, digits, _ and -)")
    add.add_argument("--trigger", help="trigger word (default @ASSISTANT_NAME)")
    add.add_argument("--no-trigger", action="store_true", help="answer every message, no trigger needed")
    add.add_argument("--main", action="store_true", help="the owner's main group (exactly one)")
    add.add_argument("--json", action="store_true")
    add.set_defaults(handler=cmd_add)

    ls = gsub.add_parser("list", help="list registered groups")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(handler=cmd_list)

    st = gsub.add_parser("set", help="change a group's name, trigger, extra mounts, timeout, egress, "
                                              "budgets or browser session")
    st.add_argument("group", help="JID or folder")
    st.add_argument("--name")
    st.add_argument("--trigger")
    st.add_argument("--no-trigger", dest="requires_trigger", action="store_false", default=None,
                    help="answer every message")
    st.add_argument("--require-trigger", dest="requires_trigger", action="store_true",
                    help="answer only messages that start with the trigger")
    st.add_argument("--mount", action="append", metavar="HOST_PATH[:CONTAINER_PATH][:rw]",
                    help="extra folder for the agent (repeatable; replaces the list; read-only unless :rw "
                         "and allowed by ~/.config/nanoclaw/mount-allowlist.json)")
    st.add_argument("--no-mounts", action="store_true", help="remove every extra mount")
    st.add_argument("--timeout", type=float, metavar="SECONDS", help="hard container timeout (0: the default)")
    st.add_argument("--daily-budget", type=float, metavar="USD",
                    help="stop this group's runs for the rest of the UTC day once its estimated spend reaches "
                         "this (0: no cap)")
    st.add_argument("--monthly-budget", type=float, metavar="USD",
                    help="the same per UTC month (0: no cap)")
    st.add_argument("--egress", metavar="POLICY",
                    help=f"what the agent may reach besides the model: model-only, allow:HOST[,HOST...] "
                         f"or open (any public host, each recorded; the default is {DEFAULT_EGRESS})")
    st.add_argument("--browser-session", choices=("keep", "forget"),
                    help="keep the browser's cookies in the group's folder from one container to the next, "
                         "or forget them when each container's browser starts (the default)")
    st.set_defaults(handler=cmd_set)

    rm = gsub.add_parser("remove", help="stop serving a group (its files stay)")
    rm.add_argument("group", help="JID or folder")
    rm.set_defaults(handler=cmd_remove)
