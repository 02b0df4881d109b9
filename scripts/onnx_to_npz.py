#!/usr/bin/python3
"""ONNX's BatchNormalization conformance cases as .npz files the Java tests read.

    onnx_to_npz.py --data DIR --out DIR

DIR is the data folder of ONNX's backend test data (Debian's libonnx-testdata:
/usr/share/libonnx-testdata/data). For each of the nine cases (node/test_batchnorm_* and
pytorch-converted/test_BatchNorm*) it writes OUT/<case>.npz with
  input_0 .. input_4   the node's inputs X, scale, B, input_mean, input_var (from the test data
                       set's input_*.pb or, for the pytorch-converted models, their initializers)
  output_0 ..          the expected outputs (test_data_set_0/output_*.pb)
  opset                the model's opset for the default domain (int64 scalar)
  attr.<name>          each attribute of the node (float32 or int64 scalar)
The protobufs are read by the onnx package itself (onnx.load, onnx.load_tensor,
onnx.numpy_helper.to_array).

Exit codes: 0 ok, 2 usage error or a case missing, 3 onnx or numpy not importable.
"""

import argparse
import os
import sys

CASES = [
    "node/test_batchnorm_example",
    "node/test_batchnorm_epsilon",
    "node/test_batchnorm_example_training_mode",
    "node/test_batchnorm_epsilon_training_mode",
    "pytorch-converted/test_BatchNorm1d_3d_input_eval",
    "pytorch-converted/test_BatchNorm2d_eval",
    "pytorch-converted/test_BatchNorm2d_momentum_eval",
    "pytorch-converted/test_BatchNorm3d_eval",
    "pytorch-converted/test_BatchNorm3d_momentum_eval",
]

try:
    import numpy as np
    import onnx
    from onnx import numpy_helper
except Exception as err:  # noqa: BLE001 - any import failure means "not available"
    print("onnx not available: " + (" ".join(str(err).split()) or type(err).__name__))
    sys.exit(3)


def convert(case_dir):
    model = onnx.load(os.path.join(case_dir, "model.onnx"))
    nodes = [n for n in model.graph.node if n.op_type == "BatchNormalization"]
    if len(model.graph.node) != 1 or len(nodes) != 1:
        raise ValueError(case_dir + ": expected a single BatchNormalization node")
    node = nodes[0]
    opset = max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    data_dir = os.path.join(case_dir, "test_data_set_0")
    initializers = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    fed = [i.name for i in model.graph.input if i.name not in initializers]
    arrays = {}
    for k, name in enumerate(node.input):
        if name in initializers:
            arrays["input_%d" % k] = initializers[name]
        else:
            pb = os.path.join(data_dir, "input_%d.pb" % fed.index(name))
            arrays["input_%d" % k] = numpy_helper.to_array(onnx.load_tensor(pb))
    for k in range(len(model.graph.output)):
        arrays["output_%d" % k] = numpy_helper.to_array(onnx.load_tensor(os.path.join(data_dir, "output_%d.pb" % k)))
    arrays["opset"] = np.array(opset, dtype=np.int64)
    for a in node.attribute:
        value = onnx.helper.get_attribute_value(a)
        if a.type == onnx.AttributeProto.FLOAT:
            arrays["attr." + a.name] = np.array(value, dtype=np.float32)
        elif a.type == onnx.AttributeProto.INT:
            arrays["attr." + a.name] = np.array(value, dtype=np.int64)
        else:
            raise ValueError(case_dir + ": attribute " + a.name + " of an unexpected type")
    return arrays


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    for case in CASES:
        case_dir = os.path.join(args.data, case)
        if not os.path.isfile(os.path.join(case_dir, "model.onnx")):
            print("missing case " + case_dir)
            sys.exit(2)
        np.savez(os.path.join(args.out, os.path.basename(case) + ".npz"), **convert(case_dir))
    print("converted", len(CASES), "cases (onnx", onnx.__version__ + ")")


if __name__ == "__main__":
    main()
