"""The ONNX path of the converter: HF-named weights -> ONNX decoder folders ORT GenAI can load.

- ``spec``: HF ``config.json`` -> ``DecoderSpec``; refuses what cannot be exported, before any weight is read
- ``graph``: the graph builder (tensor-name table, one function per block, two attention lowerings)
- ``export``: fp32 graph -> int4 (``MatMulNBits``) -> staged folders with genai_config and tokenizer files
- ``tokenizer``: ``tokenizer.json`` rebuilt from a GGUF vocabulary (for a GGUF source)
- ``parity``: logits through the runtime's onnx backend, compared with the numpy reference

``convert.pipeline.convert(..., ConvertOptions(onnx="fp32,int4"))`` is the entry
point; ``export.export_onnx`` writes folders without the rest of the converter.
"""
