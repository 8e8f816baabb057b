"""jobs/image.py around the build: wheels, progress, and the errors people see.

Most checks replace pip or the docker stream with fakes; the ones marked
`docker` talk to the real engine (a warm rebuild, a missing base image).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import docker
import pytest

from jobs import image
from jobs.image import (CLAUDE_AGENT_SDK_VERSION, IMAGE_TEST_TAG, PLAYWRIGHT_VERSION, ImageBuildError,
                        build_image, image_exists, prepare_wheels)
from jobs.runtime import RuntimeUnavailable

DOCKER_DOWN = "Docker is not running: start it with 'sudo systemctl start docker' (or scripts/install.sh)"


def fake_wheel(wheels: Path, *, playwright: bool = True) -> Path:
    wheels.mkdir(parents=True, exist_ok=True)
    path = wheels / f"claude_agent_sdk-{CLAUDE_AGENT_SDK_VERSION}-py3-none-manylinux_2_17_{image._arch()}.whl"
    path.write_bytes(b"")
    if playwright:
        (wheels / f"playwright-{PLAYWRIGHT_VERSION}-py3-none-manylinux1_{image._arch()}.whl").write_bytes(b"")
    return path


def test_wheels_already_present_are_not_downloaded_again(tmp_path, monkeypatch):
    fake_wheel(tmp_path / "wheels")
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: pytest.fail("pip should not run"))
    assert prepare_wheels(tmp_path) == tmp_path / "wheels"


def fake_pip(tmp_path, monkeypatch) -> list[list[str]]:
    """pip download stood in for: each command is kept, and it leaves both pinned wheels behind."""
    calls = []

    def fake_run(command, **kwargs):
        calls.append(command)
        fake_wheel(tmp_path / "wheels")
        return subprocess.CompletedProcess(command, 0, "", "")

    monkeypatch.setattr(subprocess, "run", fake_run)
    return calls


def test_missing_wheels_are_downloaded_for_cpython_311_manylinux(tmp_path, monkeypatch):
    calls = fake_pip(tmp_path, monkeypatch)
    prepare_wheels(tmp_path)
    [command] = calls
    joined = " ".join(command)
    assert command[1:4] == ["-m", "pip", "download"]
    assert "--only-binary=:all:" in command and "--python-version 3.11" in joined
    assert f"--platform manylinux2014_{image._arch()}" in joined
    assert f"--dest {tmp_path / 'wheels'}" in joined
    assert command[-2:] == [f"claude-agent-sdk=={CLAUDE_AGENT_SDK_VERSION}", f"playwright=={PLAYWRIGHT_VERSION}"]


def test_a_missing_playwright_wheel_is_downloaded_although_the_sdk_is_there(tmp_path, monkeypatch):
    fake_wheel(tmp_path / "wheels", playwright=False)
    calls = fake_pip(tmp_path, monkeypatch)
    prepare_wheels(tmp_path)
    assert len(calls) == 1


def test_a_failed_download_says_what_happened(tmp_path, monkeypatch):
    monkeypatch.setattr(subprocess, "run", lambda command, **k: subprocess.CompletedProcess(
        command, 1, "", "ERROR: No matching distribution found for claude-agent-sdk"))
    with pytest.raises(ImageBuildError, match="No matching distribution"):
        prepare_wheels(tmp_path)


def test_build_output_is_relayed_and_the_first_error_raised():
    lines = []
    stream = [{"stream": "Step 1/3 : FROM x\n"}, {"status": "Downloading"}, {"stream": "\n"},
              {"error": "short", "errorDetail": {"message": "The command returned a non-zero code: 100"}}]
    with pytest.raises(ImageBuildError, match="non-zero code: 100"):
        image._follow_build(iter(stream), lines.append)
    assert lines == ["Step 1/3 : FROM x", "Downloading"]


def test_the_built_image_id_comes_from_the_aux_record():
    assert image._follow_build(iter([{"aux": {"ID": "sha256:abc"}}, {"stream": "done"}]), lambda _: None) == "sha256:abc"


def test_docker_times_with_nanoseconds_parse():
    assert image._parse_docker_time("2026-01-02T03:04:05.500000000Z") == pytest.approx(1767323045.5)
    assert image._parse_docker_time("2026-01-02T03:04:05Z") == pytest.approx(1767323045.0)


def test_docker_down_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    with pytest.raises(RuntimeUnavailable) as caught:
        image_exists(IMAGE_TEST_TAG)
    assert str(caught.value).startswith(DOCKER_DOWN)
    with pytest.raises(RuntimeUnavailable):
        build_image(target="test", tag="nanoclaw-agent:never")


@pytest.mark.docker
def test_a_missing_base_image_points_at_make_base(monkeypatch):
    monkeypatch.setattr(image, "DEFAULT_BASE_IMAGE", "nanoclaw-base:not-built")
    monkeypatch.setattr(image, "prepare_wheels", lambda *a: pytest.fail("no download before the base check"))
    with pytest.raises(ImageBuildError, match=r"base image nanoclaw-base:not-built is missing: run agent-container/make-base.sh"):
        build_image(target="test", tag="nanoclaw-agent:never", base_image="nanoclaw-base:not-built")
    with pytest.raises(ImageBuildError, match=r"docker pull example/other:1"):
        build_image(target="test", tag="nanoclaw-agent:never", base_image="example/other:1")


@pytest.mark.docker
def test_a_warm_rebuild_streams_progress_and_returns_the_tagged_image():
    lines: list[str] = []
    image_id = build_image(target="test", tag=IMAGE_TEST_TAG, on_progress=lines.append)
    client = docker.from_env()
    try:
        assert client.images.get(IMAGE_TEST_TAG).id == image_id
    finally:
        client.close()
    assert any(line.startswith("Step ") for line in lines)
    assert not image.image_is_stale(IMAGE_TEST_TAG)
    assert image.image_is_stale("nanoclaw-agent:no-such-tag")


@pytest.mark.docker
def test_an_image_is_stale_once_the_runner_source_changes(tmp_path):
    if image.image_is_stale(IMAGE_TEST_TAG):
        build_image(target="test", tag=IMAGE_TEST_TAG, on_progress=lambda _: None)
    copy = tmp_path / "agent-container"
    shutil.copytree(image.CONTEXT_DIR / "agent_runner", copy / "agent_runner",
                    ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("Dockerfile", ".dockerignore"):
        shutil.copy2(image.CONTEXT_DIR / name, copy / name)
    assert not image.image_is_stale(IMAGE_TEST_TAG, copy)
    with (copy / "agent_runner" / "main.py").open("a") as handle:
        handle.write("\n# changed\n")
    assert image.image_is_stale(IMAGE_TEST_TAG, copy)
