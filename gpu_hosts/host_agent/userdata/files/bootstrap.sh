#!/bin/bash
# Installs vLLM and the host agent into their own Python 3.12 environments, then starts them.
# Runs once per instance (cloud-init runcmd); every step can run again after a partial failure.
set -euo pipefail
exec > >(tee -a /var/log/gpu-host-bootstrap.log) 2>&1
set -a
. /etc/gpu-host/host.env
. /etc/gpu-host/bootstrap.env
set +a
case "$AGENT_WHEEL_URI" in
  s3:///*) echo "HostAgentArtifactsBucket is empty: no host agent to install" >&2; exit 1 ;;
esac

id gpu-host >/dev/null 2>&1 || useradd --system --home-dir /var/lib/gpu-host --create-home --shell /usr/sbin/nologin gpu-host
install -d -o gpu-host -g gpu-host /var/lib/gpu-host/huggingface

# uv brings Python 3.12 (the agent's language level) whatever the AMI's system Python is.
python3 -m pip install --quiet "uv==$UV_VERSION"
export UV_PYTHON_INSTALL_DIR=/opt/gpu-host/python
uv venv --allow-existing --python "$PYTHON_VERSION" /opt/gpu-host/vllm
uv pip install --python /opt/gpu-host/vllm/bin/python "vllm==$VLLM_VERSION"

uv venv --allow-existing --python "$PYTHON_VERSION" /opt/gpu-host/agent
uv pip install --python /opt/gpu-host/agent/bin/python boto3
wheel=/opt/gpu-host/$(basename "$AGENT_WHEEL_URI")
/opt/gpu-host/agent/bin/python - "$AGENT_WHEEL_URI" "$wheel" <<'PY'
import sys

import boto3

bucket, _, key = sys.argv[1].removeprefix("s3://").partition("/")
boto3.client("s3").download_file(bucket, key, sys.argv[2])
PY
uv pip install --python /opt/gpu-host/agent/bin/python "$wheel"

systemctl daemon-reload
systemctl enable --now vllm.service vllm-health.timer host-agent.service
echo "gpu-host bootstrap done: vLLM $VLLM_VERSION serving $MODEL_ID, host agent started"
