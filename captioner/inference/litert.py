"""A trained model as one LiteRT (TensorFlow Lite) file, and reading it back with `ai_edge_litert`.

    python -m captioner.export RUN OUT --format litert [--quantize float16|dynamic-int8] [--beam-size 3]

writes `OUT/model.tflite`, `OUT/vocab.txt` and `OUT/export.json`. The file's
one signature, `serving_default`, takes `pixels` uint8 `[B, S, S, 3]` (RGB at
the model's image size; callers resize) and returns `tokens` int32 `[B, L]` and
`scores` float32 `[B]` (and the n-best, see `captioner.inference.exported`).
Normalisation, the encoder, the decoder and the search loop (greedy or beam, a
LiteRT WHILE) are inside, in built-in ops only: no Flex delegate is needed.
Ids become words with `vocab.txt` (line i is id i), outside the file.

How it converts: the serving function is frozen first (variables made
constants) and converted with `TFLITE_BUILTINS` alone. Converting the unfrozen
function with the model as the tracked object fails or breaks: the
tokenizer's hash table (`tf.HashTableV2`, `tf.LookupTableImportV2`) is pulled
in and needs Flex, the beam search's `x[:, :, None, :]` on a tensor with two
unknown dimensions (`tf.StridedSlice` with a new axis) needs Flex, and the
variables read inside the while loop are kept as resource variables that the
file leaves uninitialised. Diverse beam search (`--beam-groups`) still needs
Flex (`tf.StridedSlice` of the diversity term, `chosen[:, None, :]` in
`captioner.decoding.beam`), so such an export is refused with the converter's
op list; sampling is refused before converting (see `exported.unsupported`).

Quantisation (`quantize`): "float16" stores the weights as float16 (half the
size; the CPU dequantises them when the file is loaded), "dynamic-int8" stores
them as int8 and runs the fully-connected and convolution layers in int8 with
activations quantised per call (about a third of the size for the small models
here, whose graph is a larger share of the file than a large model's).

Reading:

    from captioner.inference.litert import LiteRTCaptioner   # or exported.load_exported(OUT)
    captioner = LiteRTCaptioner.open("OUT/model.tflite")
    captions, scores = captioner.caption_batch(pixels)       # uint8 [B, S, S, 3]
"""

import os
import re
import shutil

import numpy as np

from captioner.inference import exported

_FLEX = re.compile(r"'(tf\.\w+)' op is neither a custom op nor a flex op")


def convert(model, decoding, max_length=None, quantize=None):
    """The `.tflite` bytes of `model` with `decoding` inside, in built-in ops only.

    Raises `exported.ExportError` for what the format cannot carry, naming the ops that would need Flex.
    """
    import tensorflow as tf

    problem = exported.unsupported("litert", decoding, quantize)
    if problem:
        raise exported.ExportError(problem)
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    function = exported.pixels_function(model, decoding, max_length)
    concrete = function.get_concrete_function()
    with exported.quiet_tensorflow_warnings():
        frozen = convert_variables_to_constants_v2(concrete)
    structure = concrete.structured_outputs

    @tf.function(input_signature=function.input_signature)
    def serving_default(pixels):
        return tf.nest.pack_sequence_as(structure, frozen(pixels))

    # An empty tracked object: the converter keeps the signature's names and finds no variable or table.
    converter = tf.lite.TFLiteConverter.from_concrete_functions([serving_default.get_concrete_function()],
                                                                tf.Module())
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if quantize is not None:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if quantize == "float16":
            converter.target_spec.supported_types = [tf.float16]
    try:
        with exported.quiet_tensorflow_warnings():
            return converter.convert()
    except Exception as error:  # tf.lite's ConverterError, not exported under a stable name
        flex = sorted(set(_FLEX.findall(str(error))))
        if not flex:
            raise
        raise exported.ExportError(
            f"a LiteRT export cannot carry {decoding.describe()} in built-in ops: {', '.join(flex)} would need "
            "the Flex delegate (SELECT_TF_OPS), which apps must then ship; choose another decoding "
            "(greedy or plain beam search convert) or a SavedModel") from None


def export(model, out_dir, decoding, max_length=None, quantize=None):
    """Writes `out_dir` (which must not exist): `model.tflite`, `vocab.txt` and `export.json`.

    Built in a temporary folder beside it and renamed when complete: a failed export leaves nothing.
    """
    from captioner.data.tokenizer import save_vocabulary

    try:  # the file's operators are listed in export.json with its schema: needed before minutes of converting
        import ai_edge_litert  # noqa: F401
    except ImportError:
        raise exported.ExportError("--format litert needs ai-edge-litert: pip install ai-edge-litert (or the "
                                   "package's export extra, pip install -e \".[export]\")") from None
    data = convert(model, decoding, max_length, quantize)
    partial = exported.make_partial_folder(out_dir)
    try:
        with open(os.path.join(partial, exported.MODEL_FILES["litert"]), "wb") as handle:
            handle.write(data)
        save_vocabulary(model.tokenizer, os.path.join(partial, exported.VOCABULARY))
        exported.write_info(partial, model, "litert", decoding, max_length, quantize,
                            builtin_ops_only=True, operators=operators(data))
        os.rename(partial, out_dir)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return out_dir


def operators(model_content):
    """`{operator: count}` of a `.tflite` file's contents over all its subgraphs; Flex ops are named `Flex...`."""
    from ai_edge_litert import schema_py_generated as schema

    names = {value: key for key, value in vars(schema.BuiltinOperator).items() if not key.startswith("_")}
    model = schema.Model.GetRootAsModel(model_content, 0)
    codes = []
    for index in range(model.OperatorCodesLength()):
        code = model.OperatorCodes(index)
        custom = code.CustomCode()
        codes.append(custom.decode() if custom else names[max(code.BuiltinCode(), code.DeprecatedBuiltinCode())])
    counts = {}
    for graph in (model.Subgraphs(i) for i in range(model.SubgraphsLength())):
        for operator in (graph.Operators(i) for i in range(graph.OperatorsLength())):
            name = codes[operator.OpcodeIndex()]
            counts[name] = counts.get(name, 0) + 1
    return dict(sorted(counts.items()))


def _interpreter_class():
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        try:
            import tensorflow as tf
        except ImportError:
            raise exported.ExportError("reading a LiteRT export needs ai-edge-litert: pip install ai-edge-litert "
                                       "(or the package's export extra, pip install -e \".[export]\")") from None
        return tf.lite.Interpreter
    return Interpreter


class LiteRTCaptioner(exported.ExportedCaptioner):
    """A `.tflite` export run with `ai_edge_litert` (TensorFlow's `tf.lite.Interpreter` when it is missing)."""

    format = "litert"

    @classmethod
    def open(cls, path, num_threads=None):
        """The export whose model file (or folder) is `path`."""
        return exported.load_exported(path, num_threads=num_threads)

    def _open(self):
        interpreter = _interpreter_class()(model_path=self.path, num_threads=self.num_threads)
        self._interpreter = interpreter
        self._runner = interpreter.get_signature_runner("serving_default")

    def _input_size(self):
        return int(self._runner.get_input_details()["pixels"]["shape_signature"][1])

    def _run(self, pixels):
        return self._from_tokens(self._runner(pixels=np.ascontiguousarray(pixels)))
