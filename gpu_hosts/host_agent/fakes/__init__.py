"""Stand-ins for what a GPU host talks to (vLLM, NVML, IMDSv2, SQS), for tests, the benchmark and trying
the agent on a machine without a GPU. Nothing here is used by the service itself."""
