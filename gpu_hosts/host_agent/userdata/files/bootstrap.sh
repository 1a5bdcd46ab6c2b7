#!/bin/bash
# Configures a host booted from its tier's image (images/template.yaml bakes vLLM, the agent and the weights):
# checks the image holds this tier's model and the stack's vLLM release, then starts the units. It installs
# and downloads nothing. Any failure marks the host failed in the registry with its reason, so the launch
# workflow abandons it at its next poll instead of waiting out the launch hook (docs/host-contract.md).
set -Eeuo pipefail
root=$(printenv GPU_HOST_ROOT || true)  # a test's sandbox; empty on a host
exec > >(tee -a "$root/var/log/gpu-host-bootstrap.log") 2>&1
agent="$root/opt/gpu-host/agent/bin/host-agent"
manifest="$root/etc/gpu-host/image.json"
step="reading the configuration"

# With no agent on the image, the Deep Learning AMI's own Python and boto3 write the same item.
record_without_agent() {
  local token instance
  token=$(curl -fsS -m 2 -X PUT -H "X-aws-ec2-metadata-token-ttl-seconds: 60" http://169.254.169.254/latest/api/token) || return 1
  instance=$(curl -fsS -m 2 -H "X-aws-ec2-metadata-token: $token" http://169.254.169.254/latest/meta-data/instance-id) || return 1
  python3 - "$instance" "$1" <<'PY'
import os
import sys
import time
from datetime import UTC, datetime

import boto3

instance, reason = sys.argv[1], sys.argv[2][:1000]
now = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
boto3.client("dynamodb", region_name=os.environ["AWS_REGION"]).update_item(
    TableName=os.environ["HOSTS_TABLE"],
    Key={"instance_id": {"S": instance}},
    UpdateExpression="SET tier = :tier, #state = :failed, in_flight = :zero, heartbeat_at = :now,"
    " expires_at = :expires, failure_reason = :reason, failed_at = :now",
    ExpressionAttributeNames={"#state": "state"},
    ExpressionAttributeValues={
        ":tier": {"S": os.environ["FLEET_TIER"]},
        ":failed": {"S": "failed"},
        ":zero": {"N": "0"},
        ":now": {"S": now},
        ":expires": {"N": str(int(time.time()) + 86400)},
        ":reason": {"S": reason},
    },
)
PY
}

fail() {
  trap - ERR
  local reason="bootstrap failed while $step: $1"
  echo "$reason" >&2
  # Nothing of this host may run on, or overwrite the failed state later (a stopping agent writes "drained").
  systemctl stop host-agent.service vllm.service gpu-host-prewarm.service 2>/dev/null || true
  if [ -x "$agent" ] && "$agent" --env-file "$root/etc/gpu-host/host.env" boot-failed --reason "$reason"; then
    exit 1
  fi
  record_without_agent "$reason" || echo "the failure could not be recorded: the launch hook times out instead" >&2
  exit 1
}
trap 'fail "exit status $? at line $LINENO"' ERR

set -a
. "$root/etc/gpu-host/host.env"
. "$root/etc/gpu-host/bootstrap.env"
set +a

step="checking the image"
[ -f "$manifest" ] || fail "no $manifest: the AMI is not a gpu-host image (images/template.yaml)"
[ -x "$agent" ] || fail "no host agent at $agent: the image is incomplete"
if ! problems=$("$agent" check-image --manifest "$manifest" --root "$root/" 2>&1); then
  fail "$(echo "$problems" | paste -sd ';' -)"
fi
echo "$problems"

step="starting the units"
systemctl daemon-reload
systemctl start --no-block gpu-host-prewarm.service
systemctl enable --now vllm.service vllm-health.timer host-agent.service
echo "gpu-host bootstrap done: vLLM $VLLM_VERSION serving $MODEL_ID, host agent started"
