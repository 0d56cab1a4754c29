"""``RayEmbedder``: an Embedder whose documents are embedded by a pool of Ray actors, one model in each.

``medlit index build --engine ray`` hands it to ``DenseIndex`` in place of a local embedder: the library's
embeddable articles are read, split into passages and numbered exactly as in a local build, their texts go to
the actors in shards (GPU actors with ``num_gpus=1`` when the cluster has GPUs, else CPU actors), and the
vectors come back in order to the one process that adds them to the FAISS index and commits it. The manifest,
the ``index_entries`` and the atomic file write are therefore the local build's own code.

Ray is optional (``pip install 'medlit[ray]'``) and imported only here and in ``medlit.batch``.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from foundation.errors import InputError, LibraryError, MedlitError
from foundation.progress import progress_bar
from foundation.settings import Settings

INSTALL_HINT = "pip install 'medlit[ray]'"
ENGINES = ("local", "ray")
MIN_SHARD = 256  # texts per actor call: enough to amortise the call, small enough to spread the work


def require_ray() -> Any:
    """The ``ray`` module, or InputError with the install command."""
    try:
        import ray
        import ray.data  # the batch engine needs Ray Data: ray[data]
    except ImportError as exc:
        raise InputError(f"the ray engine needs Ray: {INSTALL_HINT} ({exc})") from None
    return ray


def check_engine(engine: str) -> str:
    if engine not in ENGINES:
        raise InputError(f"unknown engine {engine!r}: choose one of {', '.join(ENGINES)}")
    return engine


@contextlib.contextmanager
def ray_session(address: str | None = None) -> Iterator[Any]:
    """Ray, initialised for the duration: a session already running in this process is used as it is;
    otherwise a local one with every CPU (``address=None``) or the cluster at ``address`` is started here
    and shut down afterwards."""
    ray = require_ray()
    if ray.is_initialized():
        yield ray
        return
    try:
        if address:
            ray.init(address=address)
        else:
            ray.init(num_cpus=os.cpu_count(), include_dashboard=False)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = f"the Ray cluster at {address}" if address else "a local Ray instance"
        raise LibraryError(f"cannot start {where}: {exc}") from None
    try:
        yield ray
    finally:
        ray.shutdown()


def unwrap_ray_error(exc: BaseException) -> BaseException:
    """A medlit error raised inside a Ray task, as itself (Ray wraps it with the remote traceback)."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, MedlitError):
        return cause
    return LibraryError(f"a Ray worker failed: {str(exc).strip().splitlines()[-1][:500]}")


class _EmbedActor:
    """Holds one embedder (loaded on first use, so that a load error reaches the caller as itself)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._embedder: Any = None

    def _model(self) -> Any:
        if self._embedder is None:
            from indexes.dense_index import embedder_from_settings

            self._embedder = embedder_from_settings(self.settings)
        return self._embedder

    def describe(self) -> dict[str, Any]:
        model = self._model()
        return {"name": model.name, "dimension": int(model.dimension), "max_tokens": int(model.max_tokens)}

    def embed(self, texts: list[str]) -> np.ndarray:
        return np.asarray(self._model().embed_documents(texts), dtype=np.float32)

    def embed_query(self, text: str) -> np.ndarray:
        return np.asarray(self._model().embed_query(text), dtype=np.float32)

    def count_tokens(self, texts: list[str]) -> list[int]:
        return list(self._model().count_tokens(texts))


class RayEmbedder:
    """The settings' embedder, run in ``workers`` Ray actors (default: one per GPU when the cluster has
    GPUs, else CPU actors over every CPU). Needs a Ray session (``ray_session``); ``close()`` ends the actors.

    Each actor loads the model the settings describe on its own node: with ``backend=auto`` a GPU actor picks
    torch (``.../torch-fp32``), so an index built on GPUs is searched with the torch backend too.
    """

    def __init__(self, settings: Settings, *, workers: int | None = None) -> None:
        ray = require_ray()
        from ray.util import ActorPool

        if workers is not None and workers < 1:
            raise InputError(f"workers must be at least 1 (got {workers})")
        resources = ray.cluster_resources()
        gpus = int(resources.get("GPU", 0))
        cpus = max(1, int(resources.get("CPU", 1)))
        cfg = settings.embedding
        if gpus:
            count = workers or gpus
            options: dict[str, Any] = {"num_gpus": 1, "num_cpus": 1}
            actor_settings = settings
        else:
            # a few threads per model: more models cost memory, more threads per model scale less well
            threads = cfg.threads or (1 if cpus < 8 else 4)
            count = workers or max(1, cpus // threads)
            options = {"num_cpus": min(threads, cpus)}
            actor_settings = settings.model_copy(
                update={"embedding": cfg.model_copy(update={"threads": threads})}
            )
        actor_class = ray.remote(**options)(_EmbedActor)
        self._ray = ray
        self._actors = [actor_class.remote(actor_settings) for _ in range(count)]
        self._pool = ActorPool(self._actors)
        self.workers = count
        self.gpus = gpus
        try:
            described = ray.get([actor.describe.remote() for actor in self._actors])
        except Exception as exc:
            self.close()
            raise unwrap_ray_error(exc) from None
        names = {d["name"] for d in described}
        if len(names) != 1:
            self.close()
            raise LibraryError(f"the Ray actors loaded different models ({', '.join(sorted(names))})")
        self.name: str = described[0]["name"]
        self.dimension: int = described[0]["dimension"]
        self.max_tokens: int = described[0]["max_tokens"]
        self.shard_size = max(MIN_SHARD, 8 * (cfg.batch_size or 0))

    def __repr__(self) -> str:
        return f"RayEmbedder({self.name!r}, workers={self.workers}, gpus={self.gpus})"

    def embed_documents(self, texts: Sequence[str], *, progress: bool = False) -> np.ndarray:
        """float32 (len(texts), dimension), in the input order; shards run on the actors in parallel."""
        if isinstance(texts, str):
            raise TypeError("embed_documents takes a sequence of texts, not one string")
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        if not texts:
            return out
        starts = range(0, len(texts), self.shard_size)
        shards = [list(texts[start : start + self.shard_size]) for start in starts]
        with progress_bar(len(texts), f"embedding on {self.workers} Ray actors", "doc", progress) as bar:
            try:
                for start, vectors in zip(
                    starts,
                    self._pool.map(lambda actor, shard: actor.embed.remote(shard), shards),
                    strict=True,
                ):
                    out[start : start + len(vectors)] = vectors
                    bar.update(len(vectors))
            except self._ray.exceptions.RayError as exc:
                raise unwrap_ray_error(exc) from None
        return out

    def embed_query(self, text: str) -> np.ndarray:
        return np.asarray(self._ray.get(self._actors[0].embed_query.remote(text)), dtype=np.float32)

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return list(self._ray.get(self._actors[0].count_tokens.remote(list(texts))))

    def close(self) -> None:
        for actor in self._actors:
            with contextlib.suppress(Exception):
                self._ray.kill(actor)
        self._actors = []

    def __enter__(self) -> RayEmbedder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def build_index_on_ray(
    store: Any,
    settings: Settings,
    *,
    kind: str | None = None,
    progress: bool = False,
    address: str | None = None,
    workers: int | None = None,
) -> Any:
    """``DenseIndex.build`` with the embedding spread over Ray actors (local Ray, or the cluster at
    ``address``); returns the same ``IndexReport``."""
    from indexes.dense_index import DenseIndex

    with ray_session(address), RayEmbedder(settings, workers=workers) as embedder:
        return DenseIndex(store, settings, embedder=embedder).build(kind=kind, progress=progress)
