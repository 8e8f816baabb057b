"""Settings, read once from the environment and the install's `.env`.

Every runtime path lives under the install root (`NANOCLAW_ROOT`, else the
current directory) so tests and benchmarks run in throw-away roots; only the
local chat socket is kept outside it, where no container's mount reaches.
Values are typed and validated here, at start-up: a bad value is one clear
error naming the key and what it accepts, never a silent fallback. Secrets
read from `.env` stay in this object; they are never copied into
`os.environ`, so no child process inherits them.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DEFAULT_ASSISTANT_NAME = "Andy"
DEFAULT_CONTAINER_IMAGE = "nanoclaw-agent:latest"
DEFAULT_CONTAINER_TIMEOUT_MS = 1_800_000
DEFAULT_IDLE_TIMEOUT_MS = 1_800_000
DEFAULT_CONTAINER_MAX_OUTPUT_BYTES = 10 * 1024 * 1024
DEFAULT_MAX_MESSAGES_PER_PROMPT = 10
DEFAULT_MAX_CONCURRENT_CONTAINERS = 5
DEFAULT_READY_AGENTS = 2                 # groups kept with an agent started ahead of their next message
DEFAULT_READY_AGENT_TTL_S = 1_800        # how long one waits for its first input before it retires
DEFAULT_READY_AGENTS_MEMORY_MB = 1_024   # what every ready agent together may hold
MIN_TIMEOUT_MS = 1_000  # a container timeout (the configured ones, or a group's own): one second ...
MAX_TIMEOUT_MS = 7 * 86_400_000  # ... to seven days
LOCAL_CHAT_SOCKET_NAME = "local-chat.sock"
UNIX_SOCKET_PATH_MAX_BYTES = 107  # the kernel's sun_path holds 108 bytes, the last one a NUL
INSTALL_KEY_HEX_CHARS = 12  # of sha256(install root): tells two installs' sockets apart
QUEUE_NAME = "nanoclaw"  # huey's name for our queue in store/queue.db (its rows are keyed by it)

LOG_LEVELS = ("trace", "debug", "info", "warn", "error", "fatal")
AGENT_PROVIDERS = ("claude", "scripted")
SYNC_MODES = ("normal", "full")
CONTAINER_RUNTIMES = ("docker", "podman")

# Keys whose values are credentials: kept out of os.environ and out of logs.
SECRET_KEYS = (
    "ANTHROPIC_API_KEY",
    "CLAUDE_CODE_OAUTH_TOKEN",
    "ANTHROPIC_AUTH_TOKEN",
    "TELEGRAM_BOT_TOKEN",
    "SLACK_BOT_TOKEN",
    "SLACK_APP_TOKEN",
    "DISCORD_BOT_TOKEN",
)

_INT_RE = re.compile(r"^\s*[+-]?\d[\d_]*\s*$")
_NETWORK_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


class ConfigError(Exception):
    """A setting has a value the program cannot run with."""

    def __init__(self, key: str, message: str):
        super().__init__(f"{key}: {message}")
        self.key = key


def parse_dotenv(text: str) -> dict[str, str]:
    """Parse `.env` text with v1's rules.

    Blank lines and `#` comments are skipped; the line splits at the first
    `=`; matching outer quotes are dropped; an empty value counts as absent;
    a later duplicate wins. No `export`, no escapes, no inline comments.
    """
    values: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, value = (part.strip() for part in line.split("=", 1))
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        if key and value:
            values[key] = value
    return values


def read_dotenv(path: Path) -> dict[str, str]:
    """Read a `.env` file; a missing file is an empty mapping."""
    try:
        return parse_dotenv(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(".env", f"cannot read {path}: {exc}") from exc


class _Source:
    """Looks a key up in the process environment first, then in `.env`."""

    def __init__(self, environ: dict[str, str], dotenv: dict[str, str]):
        self.environ = environ
        self.dotenv = dotenv

    def get(self, key: str) -> str | None:
        value = self.environ.get(key)
        if value is not None and value.strip() != "":
            return value
        return self.dotenv.get(key)

    def integer(self, key: str, default: int, low: int, high: int, unit: str) -> int:
        raw = self.get(key)
        if raw is None:
            return default
        accepted = f"accepted: a whole number of {unit} from {low:_} to {high:_}"
        if not _INT_RE.match(raw):
            raise ConfigError(key, f"{raw!r} is not a whole number ({accepted})")
        value = int(raw.strip().replace("_", ""))
        if not low <= value <= high:
            raise ConfigError(key, f"{value:_} is out of range ({accepted})")
        return value

    def dollars(self, key: str) -> float | None:
        """An amount in USD such as `5` or `2.50`; None when unset (no limit)."""
        raw = self.get(key)
        if raw is None or not raw.strip():
            return None
        try:
            value = float(raw.strip())
        except ValueError:
            raise ConfigError(key, f"{raw!r} is not an amount in USD (such as 5 or 2.50)") from None
        if not 0 < value < 1_000_000:
            raise ConfigError(key, f"{raw!r} is out of range (more than 0, less than 1,000,000 USD)")
        return value

    def choice(self, key: str, default: str, allowed: tuple[str, ...]) -> str:
        raw = self.get(key)
        if raw is None:
            return default
        value = raw.strip().lower()
        if value == "warning":
            value = "warn"
        if value not in allowed:
            raise ConfigError(key, f"{raw!r} is not one of: {', '.join(allowed)}")
        return value


def _resolve_timezone(source: _Source) -> str:
    """`TZ` from the environment or `.env`, else the OS zone, else UTC."""
    raw = source.get("TZ")
    if raw is None or raw.strip() in (":/etc/localtime", ":localtime"):
        return _os_timezone()
    name = raw.strip().lstrip(":")
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ConfigError(
            "TZ", f"{raw!r} is not an IANA time zone (accepted: names such as UTC, Europe/Berlin)"
        ) from exc
    return name


def _os_timezone() -> str:
    """The machine's zone name from /etc/localtime, or UTC when unknown."""
    try:
        target = os.path.realpath("/etc/localtime")
        marker = "/zoneinfo/"
        if marker in target:
            name = target.split(marker, 1)[1]
            ZoneInfo(name)
            return name
    except (OSError, ZoneInfoNotFoundError, ValueError):
        pass
    return "UTC"


def _assistant_name(source: _Source) -> str:
    name = (source.get("ASSISTANT_NAME") or DEFAULT_ASSISTANT_NAME).strip()
    if not 1 <= len(name) <= 64 or any(ch.isspace() or ch in "<>&\"" for ch in name):
        raise ConfigError(
            "ASSISTANT_NAME",
            f"{name!r} is not usable (accepted: 1 to 64 characters, no spaces or < > & \")",
        )
    return name


def _container_network(source: _Source) -> str:
    """`none` (the default: the credential gateway is the agent's only way out), or a Docker network.

    Any other value is the documented, unsafe opt-out: the agent then reaches
    whatever that network reaches, past its group's egress policy.
    """
    name = (source.get("CONTAINER_NETWORK") or "none").strip()
    if not _NETWORK_RE.match(name):
        raise ConfigError("CONTAINER_NETWORK", f"{name!r} is not a Docker network name (accepted: bridge, none, "
                          "host, or a network created with 'docker network create')")
    return name


def _base_url(source: _Source) -> str | None:
    """`ANTHROPIC_BASE_URL`: another endpoint for the model's API (a proxy, a stand-in)."""
    url = source.get("ANTHROPIC_BASE_URL")
    if url is None:
        return None
    url = url.strip()
    if not re.match(r"^https?://[^\s/]+", url):
        raise ConfigError("ANTHROPIC_BASE_URL", f"{url!r} is not an http(s) URL")
    return url


def _telegram_api_url(source: _Source) -> str | None:
    """`TELEGRAM_API_BASE_URL`: a Bot API server other than Telegram's (a local one, a stand-in)."""
    url = _server_root(source, "TELEGRAM_API_BASE_URL", "http://127.0.0.1:8081")
    if url is not None and url.lower().endswith("/bot"):
        raise ConfigError("TELEGRAM_API_BASE_URL", f"{url!r} ends in /bot: give the server's root without it "
                          f"({url[:-4]!r}); the bot adds /bot<token> itself")
    return url


def _server_root(source: _Source, key: str, example: str) -> str | None:
    """A chat platform's server other than its own (`SLACK_API_BASE_URL`, ...): an http(s) root, no trailing /."""
    url = source.get(key)
    if url is None:
        return None
    url = url.strip().rstrip("/")
    if not re.match(r"^https?://[^\s/]+(/[^\s]*)?$", url):
        raise ConfigError(key, f"{url!r} is not an http(s) URL (accepted: the server's root, for example {example})")
    return url


def _dashboard_bind(source: _Source) -> str:
    """The dashboard's address: an IP address (`127.0.0.1` by default; anything else reaches further)."""
    value = (source.get("DASHBOARD_BIND") or "127.0.0.1").strip()
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise ConfigError("DASHBOARD_BIND", f"{value!r} is not an IP address (accepted: 127.0.0.1, ::1, "
                          "or an address of this machine)") from None


def _runtime_dir(environ: dict[str, str]) -> Path | None:
    """`XDG_RUNTIME_DIR` when it names an absolute folder (the XDG rule: otherwise ignore it)."""
    raw = (environ.get("XDG_RUNTIME_DIR") or "").strip()
    return Path(raw) if raw and os.path.isabs(raw) and os.path.isdir(raw) else None


def install_key(root: Path) -> str:
    """A short, stable name for one install root, so two installs never share a socket."""
    return hashlib.sha256(os.fsencode(root)).hexdigest()[:INSTALL_KEY_HEX_CHARS]


def private_runtime_base(runtime_dir: Path | None, uid: int) -> Path:
    """The folder of this user's nanoclaw sockets: in the runtime dir, else a private one in /tmp."""
    if runtime_dir is not None:
        return runtime_dir / "nanoclaw"
    per_user = Path(f"/run/user/{uid}")
    if per_user.is_dir():
        return per_user / "nanoclaw"
    return Path(f"/tmp/nanoclaw-{uid}")


def _local_chat_socket(source: _Source, root: Path) -> Path | None:
    """`LOCAL_CHAT_SOCKET`: an absolute socket path outside the install (which main's container sees)."""
    raw = source.get("LOCAL_CHAT_SOCKET")
    if raw is None:
        return None
    path = Path(raw.strip())
    if not path.is_absolute() or raw.strip().endswith("/"):
        raise ConfigError("LOCAL_CHAT_SOCKET", f"{raw!r} is not an absolute path to a socket file "
                          "(accepted: for example /run/user/1000/nanoclaw/local-chat.sock)")
    path = Path(os.path.normpath(path))
    real_folder = Path(os.path.realpath(path.parent))
    if real_folder == root or root in real_folder.parents:
        raise ConfigError("LOCAL_CHAT_SOCKET", f"{path} is inside the install root {root}, which the main "
                          "group's container sees; choose a folder outside it (for example under /run/user)")
    return path


def _check_socket_length(path: Path) -> None:
    size = len(os.fsencode(path))
    if size > UNIX_SOCKET_PATH_MAX_BYTES:
        raise ConfigError("LOCAL_CHAT_SOCKET", f"the local chat socket {path} is {size} bytes long, over the "
                          f"{UNIX_SOCKET_PATH_MAX_BYTES} a Unix socket path may have; set LOCAL_CHAT_SOCKET "
                          "to a shorter path")


@dataclass(frozen=True)
class Settings:
    """Every setting the service runs with; build it with `load_settings()`."""

    root: Path
    home: Path
    assistant_name: str = DEFAULT_ASSISTANT_NAME
    assistant_has_own_number: bool = False  # the chat account is the assistant's, not its owner's (WhatsApp)
    failure_notices: bool = True
    model_api_silence_s: int = 300            # the gateway gives up on a model answer silent this long
    daily_budget_usd: float | None = None      # every group together, per UTC day
    monthly_budget_usd: float | None = None    # every group together, per UTC month
    timezone: str = "UTC"
    container_image: str = DEFAULT_CONTAINER_IMAGE
    container_timeout_ms: int = DEFAULT_CONTAINER_TIMEOUT_MS
    idle_timeout_ms: int = DEFAULT_IDLE_TIMEOUT_MS
    container_max_output_bytes: int = DEFAULT_CONTAINER_MAX_OUTPUT_BYTES
    max_messages_per_prompt: int = DEFAULT_MAX_MESSAGES_PER_PROMPT
    max_concurrent_containers: int = DEFAULT_MAX_CONCURRENT_CONTAINERS
    ready_agents: int = DEFAULT_READY_AGENTS
    ready_agent_ttl_s: int = DEFAULT_READY_AGENT_TTL_S
    ready_agents_memory_mb: int = DEFAULT_READY_AGENTS_MEMORY_MB
    log_level: str = "info"
    agent_provider: str = "claude"
    event_log_sync: str = "normal"
    container_network: str = "none"
    container_runtime: str = "docker"
    anthropic_base_url: str | None = None
    telegram_api_base_url: str | None = None
    slack_api_base_url: str | None = None  # the Web API's root (Slack's own: https://slack.com)
    discord_api_base_url: str | None = None  # the REST API's root (Discord's own: https://discord.com)
    scripted_agent_file: Path | None = None
    dashboard: bool = True             # `nanoclaw run` serves the dashboard
    dashboard_bind: str = "127.0.0.1"
    dashboard_port: int = 7390
    runtime_dir: Path | None = None
    local_chat_socket_setting: Path | None = None
    secrets: dict[str, str] = field(default_factory=dict, repr=False)

    @property
    def trigger(self) -> str:
        """The default trigger word, `@<assistant name>`."""
        return f"@{self.assistant_name}"

    @property
    def store_dir(self) -> Path:
        return self.root / "store"

    @property
    def db_path(self) -> Path:
        return self.store_dir / "messages.db"

    @property
    def queue_path(self) -> Path:
        return self.store_dir / "queue.db"

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def ipc_dir(self) -> Path:
        return self.data_dir / "ipc"

    @property
    def groups_dir(self) -> Path:
        return self.root / "groups"

    @property
    def logs_dir(self) -> Path:
        return self.root / "logs"

    @property
    def config_dir(self) -> Path:
        """`~/.config/nanoclaw`: allowlists live here, outside every mount."""
        return self.home / ".config" / "nanoclaw"

    @property
    def mount_allowlist_path(self) -> Path:
        return self.config_dir / "mount-allowlist.json"

    @property
    def sender_allowlist_path(self) -> Path:
        return self.config_dir / "sender-allowlist.json"

    @property
    def local_chat_socket(self) -> Path:
        """The local chat's Unix socket, outside the install root and every container mount.

        `LOCAL_CHAT_SOCKET` when set; else `<runtime dir>/nanoclaw/<install key>/local-chat.sock`
        (the runtime dir is `$XDG_RUNTIME_DIR`, else `/run/user/<uid>`), or
        `/tmp/nanoclaw-<uid>/<install key>/local-chat.sock` where neither exists.
        """
        if self.local_chat_socket_setting is not None:
            return self.local_chat_socket_setting
        base = private_runtime_base(self.runtime_dir, os.geteuid())
        return base / install_key(self.root) / LOCAL_CHAT_SOCKET_NAME

    @property
    def verbose_container_logs(self) -> bool:
        return self.log_level in ("debug", "trace")

    def secret(self, key: str) -> str | None:
        """A credential by name, or None; never logged, never exported."""
        return self.secrets.get(key)

    def ensure_dirs(self) -> None:
        """Create the runtime folders under the root."""
        for path in (self.store_dir, self.ipc_dir, self.groups_dir, self.logs_dir):
            path.mkdir(parents=True, exist_ok=True)


def load_settings(environ: dict[str, str] | None = None) -> Settings:
    """Read and validate every setting; raise ConfigError on the first bad one."""
    env = dict(os.environ if environ is None else environ)
    root = Path(env.get("NANOCLAW_ROOT") or os.getcwd()).expanduser().resolve()
    if root.exists() and not root.is_dir():
        raise ConfigError("NANOCLAW_ROOT", f"{root} is not a directory")
    source = _Source(env, read_dotenv(root / ".env"))
    home = Path(env.get("HOME") or Path.home()).expanduser()
    container_timeout = source.integer(
        "CONTAINER_TIMEOUT", DEFAULT_CONTAINER_TIMEOUT_MS, MIN_TIMEOUT_MS, MAX_TIMEOUT_MS, "milliseconds"
    )
    idle_timeout = source.integer(
        "IDLE_TIMEOUT", DEFAULT_IDLE_TIMEOUT_MS, MIN_TIMEOUT_MS, MAX_TIMEOUT_MS, "milliseconds"
    )
    settings = Settings(
        root=root,
        home=home,
        assistant_name=_assistant_name(source),
        assistant_has_own_number=source.choice("ASSISTANT_HAS_OWN_NUMBER", "false", ("true", "false")) == "true",
        failure_notices=source.choice("FAILURE_NOTICES", "on", ("on", "off")) == "on",
        model_api_silence_s=source.integer("MODEL_API_SILENCE_TIMEOUT", 300, 1, 3600, "seconds"),
        daily_budget_usd=source.dollars("DAILY_BUDGET_USD"),
        monthly_budget_usd=source.dollars("MONTHLY_BUDGET_USD"),
        timezone=_resolve_timezone(source),
        container_image=(source.get("CONTAINER_IMAGE") or DEFAULT_CONTAINER_IMAGE).strip(),
        container_timeout_ms=container_timeout,
        idle_timeout_ms=idle_timeout,
        container_max_output_bytes=source.integer(
            "CONTAINER_MAX_OUTPUT_SIZE", DEFAULT_CONTAINER_MAX_OUTPUT_BYTES, 1_024, 1 << 30, "bytes"
        ),
        max_messages_per_prompt=source.integer(
            "MAX_MESSAGES_PER_PROMPT", DEFAULT_MAX_MESSAGES_PER_PROMPT, 1, 1_000, "messages"
        ),
        max_concurrent_containers=source.integer(
            "MAX_CONCURRENT_CONTAINERS", DEFAULT_MAX_CONCURRENT_CONTAINERS, 1, 64, "containers"
        ),
        ready_agents=source.integer("READY_AGENTS", DEFAULT_READY_AGENTS, 0, 64, "agents"),
        ready_agent_ttl_s=source.integer("READY_AGENT_TTL", DEFAULT_READY_AGENT_TTL_S, 10, 86_400, "seconds"),
        ready_agents_memory_mb=source.integer(
            "READY_AGENTS_MEMORY_MB", DEFAULT_READY_AGENTS_MEMORY_MB, 64, 1 << 20, "megabytes"
        ),
        log_level=source.choice("LOG_LEVEL", "info", LOG_LEVELS),
        agent_provider=source.choice("AGENT_PROVIDER", "claude", AGENT_PROVIDERS),
        event_log_sync=source.choice("EVENT_LOG_SYNC", "normal", SYNC_MODES),
        container_network=_container_network(source),
        container_runtime=source.choice("CONTAINER_RUNTIME", "docker", CONTAINER_RUNTIMES),
        anthropic_base_url=_base_url(source),
        telegram_api_base_url=_telegram_api_url(source),
        slack_api_base_url=_server_root(source, "SLACK_API_BASE_URL", "http://127.0.0.1:3000"),
        discord_api_base_url=_server_root(source, "DISCORD_API_BASE_URL", "http://127.0.0.1:3000"),
        scripted_agent_file=Path(p).expanduser() if (p := source.get("SCRIPTED_AGENT_FILE")) else None,
        dashboard=source.choice("DASHBOARD", "on", ("on", "off")) == "on",
        dashboard_bind=_dashboard_bind(source),
        dashboard_port=source.integer("DASHBOARD_PORT", 7390, 0, 65535, "port"),
        runtime_dir=_runtime_dir(env),
        local_chat_socket_setting=_local_chat_socket(source, root),
        secrets={key: value for key in SECRET_KEYS if (value := source.get(key))},
    )
    _check_socket_length(settings.local_chat_socket)
    return settings
