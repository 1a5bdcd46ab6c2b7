"""Search's second stage: the mixing of scores, the sentence reranker and the Bedrock rerank adapter."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from knowledge.adapters.aws.bedrock_rerank import BedrockReranker
from knowledge.embedding.hashing import HashEmbedder
from knowledge.errors import RerankError
from knowledge.queries.models import Citation, SearchHit
from knowledge.reranking import SentenceReranker, rerank_hits, split_sentences

ARN = "arn:aws:bedrock:us-west-2::foundation-model/amazon.rerank-v1:0"


def _hit(rank: int, score: float, text: str) -> SearchHit:
    citation = Citation(document_key="incoming/w/a.md", title="A", heading="A", start=0, end=len(text))
    return SearchHit(rank=rank, chunk_id=rank, score=score, similarity=score, text=text, citation=citation)


class FixedReranker:
    model_id = "fixed"

    def __init__(self, scores: Sequence[float], weight: float) -> None:
        self._scores, self.weight = list(scores), weight

    def scores(self, query: str, texts: Sequence[str]) -> list[float]:
        return self._scores[: len(texts)]


def test_split_sentences_keeps_closing_quotes_and_a_text_without_breaks() -> None:
    assert split_sentences('She said "go." Then left! Why? ') == ['She said "go."', "Then left!", "Why?"]
    assert split_sentences("no break here") == ["no break here"]
    assert split_sentences("v1.2 stays whole") == ["v1.2 stays whole"]


def test_the_reranker_alone_decides_at_weight_one_and_ranks_are_renumbered() -> None:
    hits = [_hit(1, 0.9, "a"), _hit(2, 0.5, "b"), _hit(3, 0.1, "c")]
    out = rerank_hits(hits, FixedReranker([0.1, 0.2, 0.9], weight=1.0), "q")
    assert [h.text for h in out] == ["c", "b", "a"] and [h.rank for h in out] == [1, 2, 3]
    assert out[0].score == 1.0 and out[-1].score == 0.0


def test_a_small_weight_keeps_the_first_stage_where_the_reranker_disagrees_little() -> None:
    hits = [_hit(1, 0.9, "a"), _hit(2, 0.1, "b")]
    assert [h.text for h in rerank_hits(hits, FixedReranker([0.4, 0.5], weight=0.3), "q")] == ["a", "b"]
    # Equal scores everywhere keep the first stage's order.
    same = [_hit(1, 0.5, "a"), _hit(2, 0.5, "b")]
    assert [h.text for h in rerank_hits(same, FixedReranker([0.3, 0.3], weight=0.3), "q")] == ["a", "b"]


def test_a_reranker_that_scores_too_few_texts_is_an_error() -> None:
    hits = [_hit(1, 0.9, "a"), _hit(2, 0.1, "b")]
    with pytest.raises(ValueError, match="1 of 2"):
        rerank_hits(hits, FixedReranker([0.4], weight=0.3), "q")


def test_the_sentence_reranker_scores_a_chunk_by_its_best_sentence() -> None:
    embedder = HashEmbedder(64)
    reranker = SentenceReranker(embedder)
    scores = reranker.scores(
        "the ember court", ["Weather was mild. The ember court.", "Unrelated words here."]
    )
    assert scores[0] == pytest.approx(1.0, abs=1e-5)  # one sentence is the query itself
    assert scores[1] < scores[0]
    assert reranker.model_id == "sentences:" + embedder.model_id


def _bedrock(stub: Any) -> tuple[BedrockReranker, Stubber]:
    client = boto3.client("bedrock-agent-runtime", region_name="us-west-2")
    stubber = Stubber(client)
    stub(stubber)
    stubber.activate()
    return BedrockReranker(client, model_arn=ARN), stubber


def test_bedrock_rerank_sends_every_text_and_maps_scores_back_by_index() -> None:
    expected = {
        "queries": [{"type": "TEXT", "textQuery": {"text": "who rules?"}}],
        "sources": [
            {"type": "INLINE", "inlineDocumentSource": {"type": "TEXT", "textDocument": {"text": t}}}
            for t in ("a", "b")
        ],
        "rerankingConfiguration": {
            "type": "BEDROCK_RERANKING_MODEL",
            "bedrockRerankingConfiguration": {"numberOfResults": 2, "modelConfiguration": {"modelArn": ARN}},
        },
    }
    results = {"results": [{"index": 1, "relevanceScore": 0.9}, {"index": 0, "relevanceScore": 0.2}]}
    reranker, stubber = _bedrock(lambda s: s.add_response("rerank", results, expected))
    assert reranker.scores("who rules?", ["a", "b"]) == [0.2, 0.9]
    assert reranker.model_id == "amazon.rerank-v1:0" and reranker.weight == 1.0
    stubber.assert_no_pending_responses()


@pytest.mark.parametrize(
    ("code", "transient"), [("ThrottlingException", True), ("AccessDeniedException", False)]
)
def test_bedrock_rerank_errors_become_rerank_errors(code: str, transient: bool) -> None:
    reranker, _ = _bedrock(lambda s: s.add_client_error("rerank", service_error_code=code))
    with pytest.raises(RerankError, match=code) as raised:
        reranker.scores("q", ["a"])
    assert raised.value.transient is transient


def test_bedrock_rerank_refuses_a_result_that_leaves_a_text_unscored() -> None:
    reranker, _ = _bedrock(
        lambda s: s.add_response("rerank", {"results": [{"index": 0, "relevanceScore": 0.5}]})
    )
    with pytest.raises(RerankError, match="unscored"):
        reranker.scores("q", ["a", "b"])
