"""`nanoclaw image build|check`: the agent image, built from the offline base.

Build progress streams to the terminal as Docker reports it; Docker being
down or the base image missing is one clear line saying what to do.
"""

from __future__ import annotations

import argparse
import sys
import time

from base.config import Settings
from jobs import image


def _progress(line: str) -> None:
    line = line.rstrip()
    if line:
        print(f"  {line}", flush=True)


def cmd_build(settings: Settings, args: argparse.Namespace) -> int:
    tag = args.tag or image.default_tag(args.target, settings)
    try:
        if args.if_stale and not image.image_is_stale(tag):
            print(f"{tag} is up to date with agent-container/")
            return 0
    except Exception as exc:  # Docker down: the build below says it in its own words
        print(f"nanoclaw: cannot inspect {tag}: {exc}", file=sys.stderr)
    started = time.monotonic()
    print(f"building {tag} (target {args.target}) from {args.base} ...", flush=True)
    try:
        image.build_image(target=args.target, tag=tag, base_image=args.base,
                          on_progress=_progress if not args.quiet else (lambda _: None))
    except Exception as exc:  # the engine down, ImageBuildError, a missing base: all end the same way
        print(f"nanoclaw: image build failed: {exc}", file=sys.stderr)
        return 1
    print(f"built {tag} in {time.monotonic() - started:.0f} s")
    return 0


def cmd_check(settings: Settings, args: argparse.Namespace) -> int:
    tag = args.tag or settings.container_image
    try:
        print(image.check_image(tag, settings))
    except Exception as exc:
        print(f"nanoclaw: image check failed for {tag}: {exc}", file=sys.stderr)
        return 1
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("image", help="build or check the agent container image")
    isub = p.add_subparsers(dest="image_command", required=True, metavar="COMMAND")
    build = isub.add_parser("build", help="build the agent image (about a minute for the test target)")
    build.add_argument("--target", choices=("full", "test"), default="full",
                       help="full (with Chromium) or the slimmer test target")
    build.add_argument("--tag", help="image tag (default CONTAINER_IMAGE, or nanoclaw-agent:test)")
    build.add_argument("--base", default="nanoclaw-base:bookworm", help="the base image (BASE_IMAGE)")
    build.add_argument("--quiet", action="store_true", help="no progress lines")
    build.add_argument("--if-stale", action="store_true",
                       help="only when the image is missing or older than agent-container/ (install.sh)")
    build.set_defaults(handler=cmd_build)
    check = isub.add_parser("check", help="run a smoke test of the image in a container")
    check.add_argument("--tag", help="image tag (default CONTAINER_IMAGE)")
    check.set_defaults(handler=cmd_check)
