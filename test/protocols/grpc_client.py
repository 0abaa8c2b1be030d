"""A KServe v2 gRPC client that sends what tritonclient.grpc (2.x) sends, with the real grpcio
and numpy (Debian's python3-grpcio, python3-numpy, python3-grpc-tools).

tritonclient.grpc builds a ModelInferRequest whose inputs carry name, datatype and shape, and
whose tensor bytes go in raw_input_contents, one entry per input, from `numpy_array.tobytes()`
(InferInput.set_data_from_numpy); requested outputs are listed by name (InferRequestedOutput);
headers travel as call metadata. It reads each output with `np.frombuffer(raw_output_contents[i],
dtype).reshape(shape)` (InferResult.as_numpy), matching outputs to raw contents by position.

Usage: python3 grpc_client.py PROTO_DIR ADDRESS < calls.json; prints one JSON line per call.
Each call: {"rpc": "infer", "model": ..., "inputs": [{"name", "datatype", "shape", "data"}],
"outputs": [names], "metadata": {...}} or {"rpc": "metadata" | "config" | "ready" | "live" |
"server_metadata" | "index" | "load" | "unload", "model": ...}.
"""
import json
import os
import sys
import tempfile

import grpc
import numpy as np
from grpc_tools import protoc

DTYPE = {
    "BOOL": np.bool_, "UINT8": np.uint8, "UINT16": np.uint16, "UINT32": np.uint32, "UINT64": np.uint64,
    "INT8": np.int8, "INT16": np.int16, "INT32": np.int32, "INT64": np.int64,
    "FP16": np.float16, "FP32": np.float32, "FP64": np.float64,
}


def stubs(proto_dir):
    out = tempfile.mkdtemp(prefix="brulee-grpc-py-")
    rc = protoc.main(["protoc", f"-I{proto_dir}", f"--python_out={out}", f"--grpc_python_out={out}", "inference.proto"])
    if rc != 0:
        raise SystemExit(f"protoc failed ({rc})")
    sys.path.insert(0, out)
    import inference_pb2, inference_pb2_grpc  # noqa: E402
    return inference_pb2, inference_pb2_grpc


def values(arr, datatype):
    # int64/uint64 as decimal strings so JSON keeps them exact; floats as their bits' value.
    if datatype in ("INT64", "UINT64"):
        return [str(int(v)) for v in arr.reshape(-1)]
    if datatype == "BOOL":
        return [bool(v) for v in arr.reshape(-1)]
    return [float(v) if datatype.startswith("FP") else int(v) for v in arr.reshape(-1)]


def main():
    pb, pb_grpc = stubs(sys.argv[1])
    channel = grpc.insecure_channel(sys.argv[2], options=[("grpc.max_receive_message_length", -1)])
    stub = pb_grpc.GRPCInferenceServiceStub(channel)
    for call in json.load(sys.stdin):
        md = list((call.get("metadata") or {}).items())
        try:
            rpc = call["rpc"]
            if rpc == "infer":
                req = pb.ModelInferRequest(model_name=call["model"], model_version=call.get("version", ""), id=call.get("id", ""))
                for i in call["inputs"]:
                    dt = i["datatype"]
                    data = [int(v) for v in i["data"]] if dt in ("INT64", "UINT64") else i["data"]
                    arr = np.array(data, dtype=DTYPE[dt]).reshape(i["shape"])
                    t = req.inputs.add()
                    t.name, t.datatype = i["name"], dt
                    t.shape.extend(arr.shape)
                    req.raw_input_contents.append(arr.tobytes())
                for name in call.get("outputs", []):
                    req.outputs.add().name = name
                res = stub.ModelInfer(req, metadata=md)
                outs = {}
                for k, o in enumerate(res.outputs):
                    arr = np.frombuffer(res.raw_output_contents[k], dtype=DTYPE[o.datatype]).reshape(list(o.shape))
                    outs[o.name] = {"datatype": o.datatype, "shape": list(arr.shape), "data": values(arr, o.datatype)}
                print(json.dumps({"ok": True, "model_name": res.model_name, "model_version": res.model_version, "id": res.id, "outputs": outs}))
            elif rpc == "live":
                print(json.dumps({"ok": True, "live": stub.ServerLive(pb.ServerLiveRequest()).live}))
            elif rpc == "ready":
                print(json.dumps({"ok": True, "ready": stub.ModelReady(pb.ModelReadyRequest(name=call["model"])).ready}))
            elif rpc == "server_metadata":
                r = stub.ServerMetadata(pb.ServerMetadataRequest())
                print(json.dumps({"ok": True, "name": r.name, "extensions": list(r.extensions)}))
            elif rpc == "metadata":
                r = stub.ModelMetadata(pb.ModelMetadataRequest(name=call["model"]), metadata=md)
                print(json.dumps({"ok": True, "name": r.name, "versions": list(r.versions), "platform": r.platform,
                                  "inputs": [{"name": t.name, "datatype": t.datatype, "shape": list(t.shape)} for t in r.inputs]}))
            elif rpc == "config":
                r = stub.ModelConfig(pb.ModelConfigRequest(name=call["model"]), metadata=md)
                print(json.dumps({"ok": True, "name": r.config.name, "platform": r.config.platform,
                                  "input": [{"name": t.name, "data_type": pb.DataType.Name(t.data_type), "dims": list(t.dims)} for t in r.config.input]}))
            elif rpc == "index":
                r = stub.RepositoryIndex(pb.RepositoryIndexRequest(), metadata=md)
                print(json.dumps({"ok": True, "models": [{"name": m.name, "state": m.state} for m in r.models]}))
            elif rpc in ("load", "unload"):
                f = stub.RepositoryModelLoad if rpc == "load" else stub.RepositoryModelUnload
                req = (pb.RepositoryModelLoadRequest if rpc == "load" else pb.RepositoryModelUnloadRequest)(model_name=call["model"])
                f(req, metadata=md)
                print(json.dumps({"ok": True}))
            else:
                raise SystemExit(f"unknown rpc {rpc}")
        except grpc.RpcError as e:
            print(json.dumps({"ok": False, "code": e.code().name, "details": e.details()}))
        sys.stdout.flush()


if __name__ == "__main__":
    main()
