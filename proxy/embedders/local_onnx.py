"""The local embedder: an ONNX model run with onnxruntime, texts tokenized with ``tokenizers``.

Needs the optional extra ``switchyard[local]``; both libraries are imported when the embedder is
made, and a missing one is a :class:`ConfigError` saying what to install. The model files are
found by :mod:`switchyard.proxy.embedders.local_models`; the session is loaded on first use in a worker
thread so the event loop never blocks on it.

Per batch: tokenize with truncation to ``max_length`` (or, with ``truncate="error"``, refuse
longer inputs) and padding to the longest text of the batch; feed whichever of ``input_ids``,
``attention_mask`` and ``token_type_ids`` the graph declares; take the configured output and
pool it (:func:`pool`): a rank-3 output (token embeddings) is mean-pooled over the attention
mask (or its first token taken, ``pooling="cls"``), a rank-2 output is used as is. Texts are
sorted by length before batching so batches pad little, and results are put back in order.
Inference runs in worker threads (onnxruntime releases the GIL); ``max_concurrency`` (default
1) bounds how many batches run at once, ``intra_op_threads`` how many cores each uses.
"""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Awaitable, Callable, Sequence
from types import ModuleType

import numpy as np

from switchyard.proxy.embedders.base import check_texts, empty_result, finish_vectors, run_all
from switchyard.proxy.embedders.local_models import LocalModel, resolve_local_model
from switchyard.proxy.errors import ConfigError, EmbedderBadInput, EmbedderError, WrongDimension
from switchyard.proxy.modelspec import ModelSpec

DEFAULT_MAX_BATCH = 32
_INT_TYPES = {"tensor(int64)": np.int64, "tensor(int32)": np.int32}
_TEXT_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def import_runtime() -> tuple[ModuleType, ModuleType]:
    """``(onnxruntime, tokenizers)``, or a ConfigError naming the extra to install."""
    try:
        return importlib.import_module("onnxruntime"), importlib.import_module("tokenizers")
    except ImportError as exc:
        raise ConfigError(
            f"the local embedding provider needs onnxruntime and tokenizers ({exc.name} is missing): "
            "pip install 'switchyard[local]'"
        ) from exc


def pool(output: np.ndarray, mask: np.ndarray, pooling: str) -> np.ndarray:
    """Sentence vectors ``(batch, d)`` from a model output (pure).

    ``auto``: rank 3 -> mean over the attention mask, rank 2 -> as is. ``mean`` / ``cls`` need
    rank 3; ``none`` needs rank 2. Raises ValueError for a rank that does not fit.
    """
    if output.ndim == 2 and pooling in ("auto", "none"):
        return output
    if output.ndim == 3 and pooling in ("auto", "mean"):
        weights = mask.astype(output.dtype)[:, :, None]
        counts = np.maximum(weights.sum(axis=1), 1.0)
        return (output * weights).sum(axis=1) / counts
    if output.ndim == 3 and pooling == "cls":
        return output[:, 0, :]
    raise ValueError(f"pooling {pooling!r} does not fit a rank-{output.ndim} output")


class _OnnxRunner:
    """The loaded session and tokenizer; ``run`` is synchronous and thread-safe."""

    def __init__(self, spec: ModelSpec, model: LocalModel) -> None:
        ort, tokenizers = import_runtime()
        options = ort.SessionOptions()
        options.intra_op_num_threads = spec.intra_op_threads or 0
        options.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(
                str(model.model_path), sess_options=options, providers=["CPUExecutionProvider"]
            )
            self.tokenizer = tokenizers.Tokenizer.from_file(str(model.tokenizer_path))
        except Exception as exc:  # onnxruntime and tokenizers raise their own, untyped errors
            raise ConfigError(f"model {spec.id!r}: cannot load {model.model_path}: {exc}") from exc
        self.spec = spec
        self.model = model
        self.inputs = {i.name: _INT_TYPES.get(i.type, np.int64) for i in self.session.get_inputs()}
        if "input_ids" not in self.inputs:
            raise ConfigError(f"{model.model_path} has no input_ids input (inputs: {', '.join(self.inputs)})")
        self.output = self._choose_output(model.output)
        self._configure_tokenizer()

    def _choose_output(self, wanted: str | None) -> str:
        outputs = {o.name: o.shape for o in self.session.get_outputs()}
        if wanted is None and len(outputs) == 1:
            wanted = next(iter(outputs))
        if wanted is None or wanted not in outputs:
            raise ConfigError(
                f"model {self.spec.id!r}: choose an output with the spec's 'output' "
                f"(graph outputs: {', '.join(outputs)})"
            )
        last = outputs[wanted][-1] if outputs[wanted] else None
        if isinstance(last, int) and last != self.spec.dimensions:
            raise WrongDimension(
                f"model {self.spec.id!r}: output {wanted!r} of {self.model.model_path.name} has "
                f"{last} dimensions, the spec says {self.spec.dimensions}"
            )
        return wanted

    def _configure_tokenizer(self) -> None:
        padding = self.tokenizer.padding or {}
        self.tokenizer.enable_padding(
            pad_id=int(padding.get("pad_id", 0)),
            pad_type_id=int(padding.get("pad_type_id", 0)),
            pad_token=str(padding.get("pad_token", "[PAD]")),
        )  # no length: pad to the longest text of the batch
        if self.spec.truncate == "end":
            self.tokenizer.enable_truncation(max_length=self.model.max_length)
        else:
            self.tokenizer.no_truncation()

    def run(self, texts: list[str]) -> np.ndarray:
        encodings = self.tokenizer.encode_batch(texts)
        mask = np.asarray([e.attention_mask for e in encodings], dtype=np.int64)
        self._check_lengths(mask)
        columns = {"input_ids": [e.ids for e in encodings], "attention_mask": mask,
                   "token_type_ids": [e.type_ids for e in encodings]}
        feed = {name: np.asarray(columns[name], dtype=dtype) for name, dtype in self.inputs.items()
                if name in _TEXT_INPUTS}
        try:
            (output,) = self.session.run([self.output], feed)
        except Exception as exc:  # onnxruntime's errors are untyped
            raise EmbedderError(f"model {self.spec.id!r} failed on a batch of {len(texts)}: {exc}") from exc
        try:
            return pool(np.asarray(output), mask, self.model.pooling)
        except ValueError as exc:
            raise ConfigError(f"model {self.spec.id!r}, output {self.output!r}: {exc}") from exc

    def _check_lengths(self, mask: np.ndarray) -> None:
        if self.spec.truncate == "end" or mask.size == 0:
            return
        lengths = mask.sum(axis=1)
        over = np.flatnonzero(lengths > self.model.max_length)
        if over.size:
            raise EmbedderBadInput(
                f"a text of {int(lengths[over[0]])} tokens is over model {self.spec.id!r}'s limit of "
                f"{self.model.max_length} (truncate policy is 'error')"
            )


class LocalOnnxEmbedder:
    """Embeddings from a local ONNX model; see the module docstring."""

    def __init__(self, spec: ModelSpec) -> None:
        import_runtime()
        self.spec = spec
        self.model = resolve_local_model(spec)
        self.max_batch = spec.max_batch or DEFAULT_MAX_BATCH
        self._slots = asyncio.Semaphore(spec.max_concurrency or 1)
        self._runner: _OnnxRunner | None = None
        self._loading: asyncio.Lock | None = None
        self._closed = False

    def __repr__(self) -> str:
        return f"LocalOnnxEmbedder(id={self.spec.id!r}, model={str(self.model.model_path)!r})"

    async def embed(self, texts: Sequence[str]) -> np.ndarray:
        if self._closed:
            raise EmbedderError(f"embedder for model {self.spec.id!r} is closed")
        if not texts:
            return empty_result(self.spec)
        texts = check_texts(texts)
        runner = await self._load()
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        chunks = [order[i:i + self.max_batch] for i in range(0, len(order), self.max_batch)]
        parts = await run_all([self._job(runner, [texts[i] for i in chunk]) for chunk in chunks])
        vectors = np.empty((len(texts), parts[0].shape[1]), dtype=np.float32)
        vectors[np.asarray(order)] = np.concatenate(parts)
        return finish_vectors(self.spec, vectors, len(texts), str(self.model.model_path))

    def _job(self, runner: _OnnxRunner, batch: list[str]) -> Callable[[], Awaitable[np.ndarray]]:
        async def job() -> np.ndarray:
            async with self._slots:
                return await asyncio.to_thread(runner.run, batch)

        return job

    async def _load(self) -> _OnnxRunner:
        if self._runner is None:
            if self._loading is None:
                self._loading = asyncio.Lock()
            async with self._loading:
                if self._runner is None:
                    self._runner = await asyncio.to_thread(_OnnxRunner, self.spec, self.model)
        return self._runner

    async def aclose(self) -> None:
        self._closed = True
        self._runner = None
