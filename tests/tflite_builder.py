"""Builds tiny, real TFLite flatbuffers for tests, without TensorFlow.

Each output is a constant tensor passed through a RESHAPE op, so the real
interpreter runs the graph and returns exactly the values a test chose. The
image input is consumed by a side branch (DEQUANTIZE or RESHAPE into an extra
hidden tensor) only when asked; unused inputs are fine for the interpreter.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import flatbuffers
import numpy as np
from ai_edge_litert import schema_py_generated as fb

_TYPES = {
    np.dtype(np.float32): fb.TensorType.FLOAT32,
    np.dtype(np.uint8): fb.TensorType.UINT8,
    np.dtype(np.int8): fb.TensorType.INT8,
    np.dtype(np.int32): fb.TensorType.INT32,
    np.dtype(np.int16): fb.TensorType.INT16,
}


@dataclass
class Out:
    name: str
    value: np.ndarray  # stored as is; dtype decides the tensor type
    scale: float | None = None
    zero_point: int = 0


@dataclass
class ModelSpec:
    input_shape: tuple[int, ...] = (1, 32, 32, 3)
    input_dtype: type = np.uint8
    input_scale: float | None = None
    input_zero_point: int = 0
    outputs: list[Out] = field(default_factory=list)
    # Name outputs in a "serving_default" signature (TF2 export style).
    signature: bool = False
    # Add an op with this custom code (e.g. "edgetpu-custom-op") on a side branch.
    custom_op: str | None = None


def _quant(scale: float | None, zero_point: int) -> fb.QuantizationParametersT | None:
    if scale is None:
        return None
    return fb.QuantizationParametersT(scale=[float(scale)], zeroPoint=[int(zero_point)])


def build(spec: ModelSpec) -> bytes:
    buffers = [fb.BufferT()]  # buffer 0 is the empty sentinel
    tensors: list[fb.TensorT] = []
    operators: list[fb.OperatorT] = []
    codes = [fb.OperatorCodeT(builtinCode=fb.BuiltinOperator.RESHAPE,
                              deprecatedBuiltinCode=fb.BuiltinOperator.RESHAPE)]

    def add_tensor(name: str, shape, dtype, data: np.ndarray | None = None,
                   quant: fb.QuantizationParametersT | None = None) -> int:
        buffer_index = 0
        if data is not None:
            buffers.append(fb.BufferT(data=list(np.ascontiguousarray(data).tobytes())))
            buffer_index = len(buffers) - 1
        tensors.append(fb.TensorT(shape=list(shape), type=_TYPES[np.dtype(dtype)],
                                  buffer=buffer_index, name=name, quantization=quant))
        return len(tensors) - 1

    image = add_tensor("image", spec.input_shape, spec.input_dtype,
                       quant=_quant(spec.input_scale, spec.input_zero_point))
    outputs = []
    for out in spec.outputs:
        value = np.asarray(out.value)
        const = add_tensor(out.name + "_const", value.shape, value.dtype, data=value,
                           quant=_quant(out.scale, out.zero_point))
        shape = add_tensor(out.name + "_shape", (value.ndim,), np.int32,
                           data=np.array(value.shape, dtype=np.int32))
        result = add_tensor(out.name, value.shape, value.dtype,
                            quant=_quant(out.scale, out.zero_point))
        operators.append(fb.OperatorT(opcodeIndex=0, inputs=[const, shape], outputs=[result]))
        outputs.append(result)
    if spec.custom_op:
        codes.append(fb.OperatorCodeT(builtinCode=fb.BuiltinOperator.CUSTOM,
                                      deprecatedBuiltinCode=fb.BuiltinOperator.CUSTOM,
                                      customCode=spec.custom_op))
        hidden = add_tensor("custom_out", (1,), np.float32)
        operators.append(fb.OperatorT(opcodeIndex=1, inputs=[image], outputs=[hidden]))
    graph = fb.SubGraphT(tensors=tensors, inputs=[image], outputs=outputs,
                         operators=operators, name="main")
    model = fb.ModelT(version=3, operatorCodes=codes, subgraphs=[graph], buffers=buffers,
                      description="test model")
    if spec.signature:
        model.signatureDefs = [fb.SignatureDefT(
            inputs=[fb.TensorMapT(name="images", tensorIndex=image)],
            outputs=[fb.TensorMapT(name=spec.outputs[i].name, tensorIndex=t)
                     for i, t in enumerate(outputs)],
            signatureKey="serving_default", subgraphIndex=0)]
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def ssd_outputs(boxes, classes, scores, count: int, order: str = "tf1",
                names: tuple[str, str, str, str] | None = None) -> list[Out]:
    """SSD post-processed outputs in TF1 (boxes, classes, scores, count) or TF2 order."""
    n = len(scores)
    b = Out("TFLite_Detection_PostProcess", np.asarray(boxes, np.float32).reshape(1, n, 4))
    c = Out("TFLite_Detection_PostProcess:1", np.asarray(classes, np.float32).reshape(1, n))
    s = Out("TFLite_Detection_PostProcess:2", np.asarray(scores, np.float32).reshape(1, n))
    k = Out("TFLite_Detection_PostProcess:3", np.array([count], np.float32))
    if names:
        for out, name in zip((b, c, s, k), names):
            out.name = name
    if order == "tf1":
        return [b, c, s, k]
    return [s, b, k, c]  # the TF2 object detection API export order
