"""Typed errors of the converter. The CLI prints ``message`` on one line and exits non-zero."""

from __future__ import annotations

from thinkling.runtime.errors import ThinklingError


class ConversionError(ThinklingError):
    """Base class: the input cannot be converted as asked."""

    code = "conversion_error"


class MissingFile(ConversionError):
    code = "missing_file"

    def __init__(self, path: str, what: str = ""):
        self.path = str(path)
        self.what = what
        super().__init__(f"missing file: {self.path}" + (f" ({what})" if what else ""))


class CorruptFile(ConversionError):
    """A file exists but cannot be read: truncated safetensors, bad JSON, bad protobuf."""

    code = "corrupt_file"

    def __init__(self, path: str, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"cannot read {self.path}: {reason}")


class UnsupportedArchitecture(ConversionError):
    code = "unsupported_architecture"

    def __init__(self, arch: str, supported: list[str] | None = None, detail: str = ""):
        self.arch = arch
        self.supported = list(supported or [])
        self.detail = detail
        msg = f"unsupported architecture {arch!r}"
        if detail:
            msg += f": {detail}"
        if self.supported:
            msg += f" (supported: {', '.join(self.supported)})"
        super().__init__(msg)


class UnsupportedTokenizer(ConversionError):
    code = "unsupported_tokenizer"

    def __init__(self, reason: str):
        self.reason = reason
        super().__init__(f"unsupported tokenizer: {reason}")


class UnsupportedAdapter(ConversionError):
    """A PEFT feature the merge does not implement (DoRA, another PEFT type, ...)."""

    code = "unsupported_adapter"

    def __init__(self, feature: str, detail: str = ""):
        self.feature = feature
        self.detail = detail
        super().__init__(f"unsupported adapter: {feature}" + (f" ({detail})" if detail else ""))


class AdapterMismatch(ConversionError):
    """The adapter does not fit the base model: unknown module, wrong shape, other architecture."""

    code = "adapter_mismatch"

    def __init__(self, tensor: str, reason: str, expected=None, got=None):
        self.tensor = tensor
        self.reason = reason
        self.expected = expected
        self.got = got
        detail = f" (expected {expected}, got {got})" if expected is not None or got is not None else ""
        super().__init__(f"adapter does not match the base model at {tensor}: {reason}{detail}")


class UnknownQuant(ConversionError):
    code = "unknown_quant"

    def __init__(self, quant: str, known: list[str]):
        self.quant = quant
        self.known = list(known)
        super().__init__(f"unknown output type {quant!r} (known: {', '.join(self.known)})")


class QuantizationFailed(ConversionError):
    code = "quantization_failed"

    def __init__(self, quant: str, reason: str):
        self.quant = quant
        self.reason = reason
        super().__init__(f"quantization to {quant} failed: {reason}")


class UnsupportedSource(ConversionError):
    """The source is readable but cannot give what was asked of it (e.g. ONNX from a GGUF file)."""

    code = "unsupported_source"

    def __init__(self, path: str, detail: str):
        self.path = str(path)
        self.detail = detail
        super().__init__(f"cannot convert {self.path} as asked: {detail}")


class WriteFailed(ConversionError):
    """An output could not be written whole (a full disk, a file-size limit, an I/O error)."""

    code = "write_failed"

    def __init__(self, out: str, reason: str):
        self.out = out
        self.reason = reason
        super().__init__(f"could not write the outputs in {out}: {reason} (is the disk full?)")
