"""A Bedrock rerank model (Amazon Rerank, Cohere Rerank) as search's second stage (`knowledge.ports.Reranker`).

One `bedrock-agent-runtime` Rerank call scores every candidate; the client is built with
`bedrock_client_config`, so the call, retries included, fits the API function's embedding budget.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from botocore.exceptions import BotoCoreError, ClientError

from knowledge.errors import RerankError

AMAZON_RERANK_MODEL_ID: Final = "amazon.rerank-v1:0"
# Rerank's limits: 1,000 sources a call, 32,000 characters a text (query and each source).
MAX_SOURCES: Final = 1000
MAX_TEXT_CHARS: Final = 32_000
_TRANSIENT_CODES: Final = frozenset(
    {
        "ThrottlingException",
        "ServiceQuotaExceededException",
        "InternalServerException",
        "BadGatewayException",
        "DependencyFailedException",
        "ConflictException",
    }
)


def model_arn(region: str, model_id: str, partition: str = "aws") -> str:
    return f"arn:{partition}:bedrock:{region}::foundation-model/{model_id}"


class BedrockReranker:
    """Scores texts with a Bedrock rerank model; its order is used alone (weight 1), as its documentation
    uses it."""

    weight = 1.0

    def __init__(self, client: Any, *, model_arn: str) -> None:
        self._client = client
        self.model_arn = model_arn
        self.model_id = model_arn.rsplit("/", 1)[-1]

    def scores(self, query: str, texts: Sequence[str]) -> list[float]:
        if not texts:
            return []
        if len(texts) > MAX_SOURCES:
            raise RerankError(f"Bedrock reranks at most {MAX_SOURCES} texts a call, not {len(texts)}")
        try:
            response = self._client.rerank(
                queries=[{"type": "TEXT", "textQuery": {"text": query[:MAX_TEXT_CHARS]}}],
                sources=[
                    {
                        "type": "INLINE",
                        "inlineDocumentSource": {
                            "type": "TEXT",
                            "textDocument": {"text": t[:MAX_TEXT_CHARS]},
                        },
                    }
                    for t in texts
                ],
                rerankingConfiguration={
                    "type": "BEDROCK_RERANKING_MODEL",
                    "bedrockRerankingConfiguration": {
                        "numberOfResults": len(texts),
                        "modelConfiguration": {"modelArn": self.model_arn},
                    },
                },
            )
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            raise RerankError(f"Bedrock rerank failed: {code}", transient=code in _TRANSIENT_CODES) from exc
        except BotoCoreError as exc:  # timeouts and connection failures, after botocore's retries
            raise RerankError(f"Bedrock rerank unreachable: {type(exc).__name__}", transient=True) from exc
        scores = [float("-inf")] * len(texts)
        for result in response.get("results", []):
            index = int(result["index"])
            if not 0 <= index < len(texts):
                raise RerankError(f"Bedrock rerank returned index {index} for {len(texts)} texts")
            scores[index] = float(result["relevanceScore"])
        if float("-inf") in scores:
            raise RerankError("Bedrock rerank left some texts unscored")
        return scores
