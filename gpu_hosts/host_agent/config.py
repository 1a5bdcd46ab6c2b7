"""The agent's configuration, read once: /etc/gpu-host/host.env (written by the launch template's user
data) overlaid by the process environment (systemd's EnvironmentFile sets the same keys)."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from host_agent.errors import ConfigurationError

HOST_ENV_FILE = Path("/etc/gpu-host/host.env")
TIERS = ("gold", "silver", "bronze")


@dataclass(frozen=True)
class AgentConfig:
    tier: str
    region: str
    request_queue_url: str
    dead_letter_queue_url: str
    results_topic_arn: str
    hosts_table: str
    model_id: str
    metrics_namespace: str = "AiGame/Fleet"
    vllm_url: str = "http://127.0.0.1:8000"
    max_concurrency: int = 8
    receive_wait_s: int = 20
    visibility_timeout_s: int = 120
    max_receive_count: int = 4  # below the queue's redrive maxReceiveCount (5), so the reason is recorded
    generation_timeout_s: float = 300.0
    metrics_interval_s: float = 60.0
    high_resolution_metrics: bool = False
    gpu_sample_interval_s: float = 5.0
    heartbeat_interval_s: float = 10.0
    drain_grace_s: float = 90.0
    spot_poll_interval_s: float = 5.0
    imds_endpoint: str = "http://169.254.169.254"
    instance_id: str | None = None  # None: read from IMDSv2
    instance_type: str | None = None  # None: read from IMDSv2


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines as systemd's EnvironmentFile reads them (comments, blank lines, optional quotes)."""
    values: dict[str, str] = {}
    for number, raw in enumerate(path.read_text().splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        key, sep, value = line.partition("=")
        if not sep or not key.strip():
            raise ConfigurationError(f"{path}:{number}: not KEY=VALUE: {raw!r}")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key.strip()] = value
    return values


def _parse[T](env: Mapping[str, str], key: str, convert: Callable[[str], T], default: T) -> T:
    raw = env.get(key, "").strip()
    if not raw:
        return default
    try:
        return convert(raw)
    except ValueError as exc:
        raise ConfigurationError(f"{key}={raw!r}: {exc}") from exc


def _flag(raw: str) -> bool:
    lowered = raw.lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ValueError("expected true or false")


def _positive[N: (int, float)](convert: Callable[[str], N]) -> Callable[[str], N]:
    def checked(raw: str) -> N:
        value = convert(raw)
        if not value > 0:
            raise ValueError("must be positive")
        return value

    return checked


def load_config(
    env_file: Path | None = HOST_ENV_FILE, environ: Mapping[str, str] | None = None
) -> AgentConfig:
    env: dict[str, str] = {}
    if env_file is not None and env_file.exists():
        env.update(read_env_file(env_file))
    env.update(os.environ if environ is None else environ)
    required = (
        "FLEET_TIER",
        "AWS_REGION",
        "REQUEST_QUEUE_URL",
        "DEAD_LETTER_QUEUE_URL",
        "RESULTS_TOPIC_ARN",
        "HOSTS_TABLE",
        "MODEL_ID",
    )
    missing = [key for key in required if not env.get(key, "").strip()]
    if missing:
        raise ConfigurationError(f"missing from {env_file} and the environment: {', '.join(missing)}")
    tier = env["FLEET_TIER"].strip().lower()
    if tier not in TIERS:
        raise ConfigurationError(f"FLEET_TIER={tier!r}: expected one of {', '.join(TIERS)}")
    defaults = AgentConfig(tier, "", "", "", "", "", "")
    receive_wait_s = _parse(env, "RECEIVE_WAIT_S", int, defaults.receive_wait_s)
    if not 0 <= receive_wait_s <= 20:
        raise ConfigurationError(f"RECEIVE_WAIT_S={receive_wait_s}: SQS long polls last 0 to 20 s")
    return AgentConfig(
        tier=tier,
        region=env["AWS_REGION"].strip(),
        request_queue_url=env["REQUEST_QUEUE_URL"].strip(),
        dead_letter_queue_url=env["DEAD_LETTER_QUEUE_URL"].strip(),
        results_topic_arn=env["RESULTS_TOPIC_ARN"].strip(),
        hosts_table=env["HOSTS_TABLE"].strip(),
        model_id=env["MODEL_ID"].strip(),
        metrics_namespace=env.get("METRICS_NAMESPACE", "").strip() or defaults.metrics_namespace,
        vllm_url=(env.get("VLLM_URL", "").strip() or defaults.vllm_url).rstrip("/"),
        max_concurrency=_parse(env, "MAX_CONCURRENCY", _positive(int), defaults.max_concurrency),
        receive_wait_s=receive_wait_s,
        visibility_timeout_s=_parse(
            env, "VISIBILITY_TIMEOUT_S", _positive(int), defaults.visibility_timeout_s
        ),
        max_receive_count=_parse(env, "MAX_RECEIVE_COUNT", _positive(int), defaults.max_receive_count),
        generation_timeout_s=_parse(
            env, "GENERATION_TIMEOUT_S", _positive(float), defaults.generation_timeout_s
        ),
        metrics_interval_s=_parse(env, "METRICS_INTERVAL_S", _positive(float), defaults.metrics_interval_s),
        high_resolution_metrics=_parse(env, "HIGH_RESOLUTION_METRICS", _flag, False),
        gpu_sample_interval_s=_parse(
            env, "GPU_SAMPLE_INTERVAL_S", _positive(float), defaults.gpu_sample_interval_s
        ),
        heartbeat_interval_s=_parse(
            env, "HEARTBEAT_INTERVAL_S", _positive(float), defaults.heartbeat_interval_s
        ),
        drain_grace_s=_parse(env, "DRAIN_GRACE_S", float, defaults.drain_grace_s),
        spot_poll_interval_s=_parse(
            env, "SPOT_POLL_INTERVAL_S", _positive(float), defaults.spot_poll_interval_s
        ),
        imds_endpoint=(env.get("IMDS_ENDPOINT", "").strip() or defaults.imds_endpoint).rstrip("/"),
        instance_id=env.get("INSTANCE_ID", "").strip() or None,
        instance_type=env.get("INSTANCE_TYPE", "").strip() or None,
    )
