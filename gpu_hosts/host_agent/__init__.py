"""The GPU host agent: SQS worker in front of the local vLLM server, CloudWatch metrics, drain/ready contract.

The contract it implements is docs/host-contract.md.
"""

__version__ = "0.1.0"
