"""onnxruntime backend: the same contract as llama.cpp, over a decoder with a KV cache.

The model folder is what ``thinkling convert --onnx`` writes (and what ONNX
Runtime GenAI loads): ``<name>.onnx`` with ``input_ids``/``attention_mask``/
``position_ids``/``past_key_values.N.{key,value}`` in and ``logits``/
``present.N.{key,value}`` (and, when exported, ``hidden_last``) out, plus
``tokenizer.json``, ``tokenizer_config.json`` and ``genai_config.json``. The KV
cache is a list of numpy arrays ``[1, n_kv_heads, n_tokens, head_dim]`` per layer: ``present`` of one call is
the ``past`` of the next, and ``truncate`` slices it (prefix reuse).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np

from ..errors import InvalidModelFile, MissingExtra
from .base import BackendOptions, Capabilities

log = logging.getLogger(__name__)

_REQUIRED_INPUTS = ("input_ids", "attention_mask", "past_key_values.0.key")
# optional output [batch, n_embd]: the last position's state after the final norm (the
# output head's input), written by thinkling's converter (convert.onnx.graph.HIDDEN_LAST)
HIDDEN_OUTPUT = "hidden_last"


def _ort():
    try:
        import onnxruntime
    except ImportError:  # the onnx extra is not installed
        raise MissingExtra("onnxruntime", "onnx", "the onnx backend") from None
    return onnxruntime


def build_info() -> str:
    """onnxruntime version and providers, for benchmark fingerprints."""
    ort = _ort()
    return f"onnxruntime {ort.__version__}; providers {','.join(ort.get_available_providers())}"


class OnnxBackend:
    """One onnxruntime session + the KV cache of a single sequence."""

    name = "onnx"

    def __init__(self, path: str, options: BackendOptions):
        from .onnx_tokenizer import HFTokenizer

        _ort()  # a missing onnxruntime is the first thing to report
        self.path = str(path)
        folder = Path(path).parent
        if not (folder / "tokenizer.json").is_file():
            raise InvalidModelFile(self.path, "no tokenizer.json beside the model")
        try:
            self.tokenizer = HFTokenizer(folder)
        except ModuleNotFoundError:  # the tokenizers package, part of the onnx extra
            raise MissingExtra("tokenizers", "onnx", "the onnx backend") from None
        except Exception as e:  # tokenizers raises plain Exceptions on bad JSON
            raise InvalidModelFile(self.path, f"unreadable tokenizer: {e}") from None
        self.genai = self._read_json(folder / "genai_config.json")
        # the converter's name for the architecture (GenAI's differs for some: gemma3_text)
        self._arch = self._read_json(folder / "manifest.json").get("architecture")
        self.session = self._open_session(options)
        self._check_io()
        ctx = (self.genai.get("model") or {}).get("context_length") or options.n_ctx
        self.n_ctx = min(options.n_ctx, int(ctx))
        self.n_batch = max(1, min(options.n_batch, self.n_ctx))
        self.n_threads = options.n_threads or os.cpu_count() or 1
        self.governor = None  # onnxruntime fixes its thread pool when the session is made
        # no grammar sampler (structured output needs llama.cpp's); the hidden state only
        # where the converter exported it
        self.capabilities = Capabilities(score_many=True, hidden_state=HIDDEN_OUTPUT in self._out_names)
        eos = (self.genai.get("model") or {}).get("eos_token_id")
        self._eog = self.tokenizer.eog_ids(eos if isinstance(eos, list) else [eos])
        self._kv: list[int] = []
        self._past = self._empty_past()
        self._last_hidden: np.ndarray | None = None

    # --- loading ------------------------------------------------------------
    @staticmethod
    def _read_json(path: Path) -> dict:
        if not path.is_file():
            return {}
        try:
            return json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as e:
            log.warning("ignoring unreadable %s: %s", path, e)
            return {}

    def _open_session(self, options: BackendOptions):
        ort = _ort()
        so = ort.SessionOptions()
        so.intra_op_num_threads = options.n_threads or os.cpu_count() or 1
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.log_severity_level = 3  # errors only; the reason reaches us as the exception
        for key, value in (options.extra.get("onnx_session_config") or {}).items():
            so.add_session_config_entry(key, str(value))
        try:
            return ort.InferenceSession(self.path, sess_options=so, providers=["CPUExecutionProvider"])
        except Exception as e:  # InvalidProtobuf, Fail, InvalidGraph, NoSuchFile ... all mean "bad file"
            msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise InvalidModelFile(self.path, f"onnxruntime could not load it: {msg[:300]}") from None

    def _check_io(self) -> None:
        ins = {i.name: i for i in self.session.get_inputs()}
        outs = [o.name for o in self.session.get_outputs()]
        missing = [n for n in _REQUIRED_INPUTS if n not in ins] + (["logits"] if "logits" not in outs else [])
        if missing:
            raise InvalidModelFile(self.path, f"not a decoder with a KV cache (missing {', '.join(missing)})")
        self._layers = sum(1 for n in ins if n.startswith("past_key_values.") and n.endswith(".key"))
        kshape = ins["past_key_values.0.key"].shape  # [batch, n_kv_heads, past, head_dim]
        self._kv_heads, self._head_dim = int(kshape[1]), int(kshape[3])
        self._has_pos = "position_ids" in ins
        # thinkling's exports: skip the head on rows nobody reads. An input with a default value
        # is an "overridable initializer" to onnxruntime, not one of get_inputs().
        self._has_keep = "logits_to_keep" in ins or any(
            i.name == "logits_to_keep" for i in self.session.get_overridable_initializers())
        logits_shape = self.session.get_outputs()[outs.index("logits")].shape
        self.n_vocab = int(logits_shape[-1]) if isinstance(logits_shape[-1], int) \
            else self.tokenizer.tok.get_vocab_size()
        self._out_names = outs

    def _empty_past(self) -> list[np.ndarray]:
        shape = (1, self._kv_heads, 0, self._head_dim)
        return [np.zeros(shape, np.float32) for _ in range(2 * self._layers)]

    # --- vocabulary ----------------------------------------------------------
    @property
    def kv_tokens(self) -> list[int]:
        return self._kv

    def tokenize(self, text: str, *, add_special: bool, parse_special: bool = True) -> list[int]:
        return self.tokenizer.encode(text, add_special=add_special, parse_special=parse_special)

    def token_bytes(self, token_id: int) -> bytes:
        return self.tokenizer.token_bytes(token_id)

    def is_eog(self, token_id: int) -> bool:
        return token_id in self._eog

    # --- evaluation ------------------------------------------------------------
    def truncate(self, n_keep: int) -> None:
        """Keep the first ``n_keep`` cached positions (prefix reuse)."""
        if n_keep < len(self._kv):
            self._past = [np.ascontiguousarray(p[:, :, :n_keep, :]) for p in self._past]
            del self._kv[n_keep:]

    def _step(self, part: list[int], last_only: bool = False) -> np.ndarray:
        n_past, n = len(self._kv), len(part)
        feed = {"input_ids": np.asarray([part], dtype=np.int64),
                "attention_mask": np.ones((1, n_past + n), dtype=np.int64)}
        if self._has_pos:
            feed["position_ids"] = np.arange(n_past, n_past + n, dtype=np.int64)[None, :]
        if self._has_keep:
            feed["logits_to_keep"] = np.asarray([1 if last_only else 0], dtype=np.int64)
        for i in range(self._layers):
            feed[f"past_key_values.{i}.key"] = self._past[2 * i]
            feed[f"past_key_values.{i}.value"] = self._past[2 * i + 1]
        outs = dict(zip(self._out_names, self.session.run(None, feed)))
        self._past = [outs[f"present.{i}.{kind}"] for i in range(self._layers) for kind in ("key", "value")]
        self._kv.extend(part)
        hidden = outs.get(HIDDEN_OUTPUT)
        self._last_hidden = None if hidden is None else np.array(hidden[0], dtype=np.float32)
        return outs["logits"][0]  # [len(part), n_vocab], or [1, n_vocab] with last_only

    def eval(self, tokens: list[int]) -> np.ndarray:
        """Append ``tokens`` in batches of ``n_batch``; return the last position's logits."""
        logits = None
        for start in range(0, len(tokens), self.n_batch):
            logits = self._step(tokens[start:start + self.n_batch], last_only=True)
        if logits is None:
            raise ValueError("eval needs at least one token")
        return logits[-1]

    def eval_hidden(self, tokens: list[int]) -> tuple[np.ndarray, np.ndarray | None]:
        """``eval`` plus the last token's final hidden state, ``[n_embd]``, when the graph
        exports it (``hidden_last``, written by thinkling's converter); ``None`` for folders
        converted before it did, which then simply lack that signal."""
        return self.eval(tokens), self._last_hidden

    def eval_many(self, tokens: list[int]) -> np.ndarray:
        """Append ``tokens`` (at most ``n_batch``) in one pass; the logits after each, ``[len(tokens), n_vocab]``."""
        if not 0 < len(tokens) <= self.n_batch:
            raise ValueError(f"eval_many takes 1..{self.n_batch} tokens, got {len(tokens)}")
        return self._step(tokens)

    # --- metadata ----------------------------------------------------------------
    def metadata(self) -> dict[str, str]:
        m = self.genai.get("model") or {}
        arch = self._arch or m.get("type") or "unknown"
        meta = {"general.architecture": str(arch), f"{arch}.context_length": str(m.get("context_length", ""))}
        if self.tokenizer.chat_template:
            meta["tokenizer.chat_template"] = self.tokenizer.chat_template
        return meta

    @property
    def bos_text(self) -> str:
        return self.tokenizer.bos_text or ""

    @property
    def eos_text(self) -> str:
        return self.tokenizer.eos_text or ""

    def chat_template(self) -> str | None:
        return self.tokenizer.chat_template

    def close(self) -> None:
        """Drop the session and the cache now (onnxruntime frees on release)."""
        self.session = None
        self._past = []
        self._kv = []


def open_backend(path: str, options: BackendOptions) -> OnnxBackend:
    p = Path(path)
    if not p.is_file():
        raise InvalidModelFile(path, "no such file")
    if p.stat().st_size == 0:
        raise InvalidModelFile(path, "empty file")
    return OnnxBackend(path, options)
