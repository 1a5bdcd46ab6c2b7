#!/bin/bash
# Restarts vLLM after three failed /health checks in a row, once its start-up grace (weights load from the
# image, torch.compile, CUDA graph capture) is over. systemd's Restart=always covers a crashed server; this
# covers a hung one.
set -u
grace_s=600
failures_file=/run/gpu-host/vllm-health-failures
mkdir -p /run/gpu-host
systemctl is-active --quiet vllm.service || exit 0
started_us=$(systemctl show vllm.service --property=ActiveEnterTimestampMonotonic --value)
uptime_s=$(cut -d' ' -f1 /proc/uptime | cut -d. -f1)
if [ $((uptime_s - started_us / 1000000)) -lt "$grace_s" ]; then
  exit 0
fi
if curl -fsS --max-time 5 -o /dev/null http://127.0.0.1:8000/health; then
  echo 0 > "$failures_file"
  exit 0
fi
failures=$(( $(cat "$failures_file" 2>/dev/null || echo 0) + 1 ))
echo "$failures" > "$failures_file"
echo "vLLM /health failed, $failures in a row"
if [ "$failures" -ge 3 ]; then
  echo 0 > "$failures_file"
  systemctl restart vllm.service
fi
