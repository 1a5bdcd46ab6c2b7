#!/bin/bash
# Reads the model weights and vLLM's libraries once, many files at a time, while vLLM starts. The root volume
# is restored from the image's snapshot and the first read of each block fetches it from S3 (EBS lazy loading,
# docs/architecture.md): parallel sequential reads fetch the blocks sooner than vLLM's one-at-a-time page
# faults and leave them in the page cache. Best effort: nothing waits for it, and a failure only costs time.
set -u
. /etc/gpu-host/vllm.env
started=$(date +%s)
find "$HF_HOME/hub" /opt/gpu-host/vllm /opt/gpu-host/python -type f -size +1M -print0 2>/dev/null \
  | xargs -0 -r -P 16 -n 4 cat > /dev/null
echo "prewarm: weights and vLLM libraries read in $(( $(date +%s) - started )) s"
