"""Building and checking the agent image (`agent-container/Dockerfile`) on Docker or Podman.

The build may have no PyPI, so the SDK's wheels are downloaded on the host
first (`prepare_wheels`) and copied into the context; progress streams from
the docker SDK's low-level API. `check_image` runs the runner once, locked
down, to prove the image works. Without settings, the engine is Docker.
"""

from __future__ import annotations

import hashlib
import platform
import socket
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any, Callable

import docker
import msgspec
from docker.errors import APIError, DockerException, ImageNotFound, NotFound
from loguru import logger
from requests.exceptions import RequestException

from base.config import DEFAULT_CONTAINER_IMAGE, Settings, load_settings
from jobs import runtime
from jobs.contract import AgentInput, OutputParser

CLAUDE_AGENT_SDK_VERSION = "0.2.189"
PLAYWRIGHT_VERSION = "1.65.2"  # drives the full image's Chromium (agent_runner/browser.py)
PYTHON_VERSION = "3.11"  # bookworm's python3, which runs the wheels in the image
IMAGE_TEST_TAG = "nanoclaw-agent:test"
IMAGE_FULL_TAG = DEFAULT_CONTAINER_IMAGE
DEFAULT_BASE_IMAGE = "nanoclaw-base:bookworm"
CONTEXT_DIR = Path(__file__).resolve().parent.parent / "agent-container"
BUILD_TIMEOUT_S = 3600
CHECK_TIMEOUT_S = 120
SOURCE_LABEL = "nanoclaw.agent-source"
DOCKER_DOWN = "Docker is not running: start it with 'sudo systemctl start docker' (or scripts/install.sh)"
# Newest first: pip prefers the first platform a wheel matches.
_MANYLINUX = ("manylinux_2_28", "manylinux_2_17", "manylinux2014")


class ImageBuildError(Exception):
    """The image could not be built, or does not pass its smoke test."""


def _client(settings: Settings | None, timeout: int = 60) -> docker.DockerClient:
    """A client for the configured engine (Docker when `settings` is None) that has answered a ping."""
    try:
        engine = runtime.client(settings, timeout=timeout)
        engine.ping()
        return engine
    except (DockerException, RequestException) as exc:
        down = DOCKER_DOWN if runtime.engine_name(settings) == "Docker" else \
            f"Podman does not answer: {runtime.start_hint(settings)}"
        raise runtime.RuntimeUnavailable(f"{down} ({exc})") from exc


# --- wheels ----------------------------------------------------------------

def _arch() -> str:
    machine = platform.machine().lower()
    return {"amd64": "x86_64", "arm64": "aarch64"}.get(machine, machine)


def sdk_wheel(wheels_dir: Path) -> Path | None:
    """The pinned SDK's wheel for this machine, if it was downloaded."""
    pattern = f"claude_agent_sdk-{CLAUDE_AGENT_SDK_VERSION}-*{_arch()}.whl"
    return next(iter(sorted(wheels_dir.glob(pattern))), None)


def playwright_wheel(wheels_dir: Path) -> Path | None:
    """The pinned Playwright's wheel for this machine (it carries its Node driver), if downloaded."""
    pattern = f"playwright-{PLAYWRIGHT_VERSION}-*{_arch()}.whl"
    return next(iter(sorted(wheels_dir.glob(pattern))), None)


def _pins() -> list[str]:
    return [f"claude-agent-sdk=={CLAUDE_AGENT_SDK_VERSION}", f"playwright=={PLAYWRIGHT_VERSION}"]


def prepare_wheels(context_dir: Path = CONTEXT_DIR) -> Path:
    """Download the SDK, Playwright and their dependencies as wheels into `<context>/wheels`.

    Runs `pip download` with this interpreter only when a pinned wheel is
    missing; every wheel is for CPython 3.11 on manylinux (or pure Python).
    """
    wheels = Path(context_dir) / "wheels"
    if sdk_wheel(wheels) and playwright_wheel(wheels):
        return wheels
    wheels.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "pip", "download", "--disable-pip-version-check",
               "--only-binary=:all:", "--python-version", PYTHON_VERSION, "--implementation", "cp"]
    for tag in _MANYLINUX:
        command += ["--platform", f"{tag}_{_arch()}"]
    command += ["--dest", str(wheels), *_pins()]
    logger.info("downloading {} wheels into {}", " and ".join(_pins()), wheels)
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0 or not sdk_wheel(wheels) or not playwright_wheel(wheels):
        tail = (done.stderr or done.stdout).strip().splitlines()[-5:]
        raise ImageBuildError(
            "could not download the agent's wheels with pip (is PyPI reachable?): " + " | ".join(tail)
        )
    return wheels


# --- build -----------------------------------------------------------------

def default_tag(target: str = "full", settings: Settings | None = None) -> str:
    """`nanoclaw-agent:test` for the test target, else the configured CONTAINER_IMAGE."""
    return IMAGE_TEST_TAG if target == "test" else (settings or load_settings()).container_image


def build_image(
    *,
    target: str = "full",
    tag: str | None = None,
    base_image: str = DEFAULT_BASE_IMAGE,
    on_progress: Callable[[str], None] | None = None,
    context_dir: Path = CONTEXT_DIR,
) -> str:
    """Build `target` of the agent image as `tag` in Docker; returns the image id.

    Docker's, whatever CONTAINER_RUNTIME says: make-base.sh imports the
    offline base image there, and a Podman install loads the built image
    into Podman's storage itself (README, Service).
    """
    tag = tag or default_tag(target)
    progress = on_progress or (lambda line: logger.debug("build: {}", line))
    engine = _client(None, timeout=BUILD_TIMEOUT_S)
    try:
        _require_base(engine, base_image)
        prepare_wheels(context_dir)
        progress(f"building {tag} (target {target}) from {base_image}")
        stream = engine.api.build(
            path=str(context_dir), tag=tag, target=target, decode=True, rm=True, forcerm=True,
            buildargs={"BASE_IMAGE": base_image, "CLAUDE_AGENT_SDK_VERSION": CLAUDE_AGENT_SDK_VERSION,
                       "PLAYWRIGHT_VERSION": PLAYWRIGHT_VERSION},
            labels={SOURCE_LABEL: source_digest(context_dir)},
        )
        image_id = _follow_build(stream, progress)
        return image_id or engine.images.get(tag).id
    except (RequestException, APIError) as exc:
        raise ImageBuildError(f"docker build of {tag} failed: {exc}") from exc
    finally:
        engine.close()


def _require_base(engine: docker.DockerClient, base_image: str) -> None:
    try:
        engine.images.get(base_image)
    except ImageNotFound:
        hint = (
            "run agent-container/make-base.sh to build it (debootstrap, no registry needed)"
            if base_image == DEFAULT_BASE_IMAGE
            else f"pull it first (docker pull {base_image}) or use agent-container/make-base.sh"
        )
        raise ImageBuildError(f"base image {base_image} is missing: {hint}") from None


def _follow_build(stream: Any, progress: Callable[[str], None]) -> str | None:
    """Relay the build's output; raise on its first error; return the image id."""
    image_id = None
    for item in stream:
        if "error" in item:
            detail = item.get("errorDetail", {}).get("message") or item["error"]
            raise ImageBuildError(str(detail).strip())
        for key in ("stream", "status"):
            text = str(item.get(key) or "").rstrip()
            if text:
                progress(text)
        aux = item.get("aux")
        if isinstance(aux, dict) and aux.get("ID"):
            image_id = aux["ID"]
    return image_id


# --- inspection ------------------------------------------------------------

def image_exists(tag: str, settings: Settings | None = None) -> bool:
    engine = _client(settings)
    try:
        engine.images.get(tag)
        return True
    except ImageNotFound:
        return False
    finally:
        engine.close()


def _parse_docker_time(value: str) -> float:
    # "2026-11-25T15:44:01.123456789Z": trim nanoseconds for fromisoformat.
    head, _, frac = value.rstrip("Z").partition(".")
    stamp = datetime.fromisoformat(head + "+00:00").timestamp()
    return stamp + (float("0." + frac) if frac else 0.0)


def _sources(context_dir: Path) -> list[Path]:
    runner = sorted(p for p in (context_dir / "agent_runner").rglob("*.py") if "__pycache__" not in p.parts)
    return [context_dir / "Dockerfile", context_dir / ".dockerignore", *runner]


def source_digest(context_dir: Path = CONTEXT_DIR) -> str:
    """A hash of what goes into the image besides the wheels (and the SDK pin)."""
    digest = hashlib.sha256(" ".join(_pins()).encode())
    for path in _sources(context_dir):
        if path.exists():
            digest.update(str(path.relative_to(context_dir)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def image_is_stale(tag: str, context_dir: Path = CONTEXT_DIR, settings: Settings | None = None) -> bool:
    """True when the image is missing or was built from other sources.

    Images built by `build_image` carry a digest of their sources, which
    survives a fresh clone's new file times; for others, any source file
    newer than the image counts as a change.
    """
    engine = _client(settings)
    try:
        attrs = engine.api.inspect_image(tag)
    except (ImageNotFound, NotFound):
        return True
    finally:
        engine.close()
    label = ((attrs.get("Config") or {}).get("Labels") or {}).get(SOURCE_LABEL)
    if label:
        return label != source_digest(context_dir)
    newest = max((p.stat().st_mtime for p in _sources(context_dir) if p.exists()), default=0.0)
    return newest > _parse_docker_time(attrs["Created"])


# --- smoke test ------------------------------------------------------------

def check_image(tag: str | None = None, settings: Settings | None = None) -> str:
    """Run the runner once (scripted provider, no network, uid 1000); one-line summary."""
    tag = tag or default_tag("full", settings)
    prompt = f"nanoclaw image check {int(time.time())}"
    request = AgentInput(
        prompt=prompt, groupFolder="image-check", chatJid="check@local", isMain=False, provider="scripted",
        # Reply, then leave at once: no host is there to send `_close`.
        scripted={"turns": [[{"reply_prompt": True}, {"crash": 0}]]},
    )
    started = time.monotonic()
    code, stdout, stderr = _run_once(tag, msgspec.json.encode(request), settings)
    elapsed = time.monotonic() - started
    results = OutputParser().feed(stdout)
    if code != 0 or not any(r.result == prompt for r in results):
        shown = stdout.decode("utf-8", "replace")
        raise ImageBuildError(
            f"{tag} failed its check (exit {code}); stdout: {shown[-300:]!r} stderr: {stderr[-300:]!r}"
        )
    return f"{tag}: runner answered in {elapsed:.1f}s (exit 0, {len(results)} output)"


def _run_once(tag: str, payload: bytes, settings: Settings | None) -> tuple[int, bytes, str]:
    """Create, feed stdin, start, wait, read logs, remove: (exit code, stdout, stderr)."""
    engine = _client(settings)
    container = None
    try:
        container = engine.containers.create(
            tag, stdin_open=True, network_mode="none", user="1000:1000", init=True,
            labels={"nanoclaw.check": "1"},
        )
        sock = engine.api.attach_socket(container.id, params={"stdin": 1, "stream": 1})
        container.start()
        sock._sock.sendall(payload)
        sock._sock.shutdown(socket.SHUT_WR)
        timer = threading.Timer(CHECK_TIMEOUT_S, _kill_quietly, args=(container,))
        timer.start()
        try:
            code = container.wait()["StatusCode"]
        finally:
            timer.cancel()
            sock.close()
        out = container.logs(stdout=True, stderr=False)
        err = container.logs(stdout=False, stderr=True).decode("utf-8", "replace")
        return code, out, err
    except ImageNotFound as exc:
        raise ImageBuildError(f"image {tag} does not exist: build it first") from exc
    finally:
        if container is not None:
            _remove_quietly(container)
        engine.close()


def _kill_quietly(container: Any) -> None:
    try:
        container.kill()
    except DockerException:
        pass


def _remove_quietly(container: Any) -> None:
    try:
        container.remove(force=True)
    except DockerException:
        pass
