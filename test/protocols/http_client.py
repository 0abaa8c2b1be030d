"""A KServe v2 REST client that sends, byte for byte, what tritonclient.http (2.x) sends, on the
same libraries it uses: geventhttpclient for HTTP, python-rapidjson for JSON, numpy for tensors
(Debian's python3-geventhttpclient, python3-rapidjson, python3-numpy; PyPI, and so tritonclient
itself, is out of reach here).

Matched behaviour (tritonclient.http of triton-inference-server/client, the 2.x line: files
http/_utils.py, http/_infer_input.py, http/_requested_output.py, http/_infer_result.py,
http/_client.py, utils/__init__.py as of 2023-2026):
- InferInput.set_data_from_numpy(x, binary_data=True) (the default): the input's JSON is
  {"name", "shape", "datatype", "parameters": {"binary_data_size": n}} with no "data", and its
  bytes are x.tobytes() (BYTES: each element a little-endian uint32 length then its bytes; BF16:
  the high two bytes of each float32) appended after the JSON in input order.
  binary_data=False: "data" is [v.item() for v in x.flatten()] (BYTES: the elements as UTF-8 str).
- The request is {"id"?, "inputs", "outputs"?, "parameters"?} dumped by rapidjson (compact); when
  no outputs are requested, parameters.binary_data_output is true. Each requested output is
  {"name", "parameters": {"binary_data": bool}} (InferRequestedOutput defaults binary_data=True).
- With binary inputs the body is JSON + bytes and the header Inference-Header-Content-Length is
  len(json) (a str length: rapidjson escapes non-ASCII, so it is the byte length); with none the
  body is the JSON alone and that header is absent. No Content-Type is set.
- request_compression_algorithm gzip/deflate: Content-Encoding and gzip.compress / zlib.compress
  of the whole body; response_compression_algorithm: Accept-Encoding.
- InferResult: decompresses by Content-Encoding, reads Inference-Header-Content-Length bytes of
  JSON, then finds each binary output at the running sum of binary_data_size in output order;
  as_numpy uses np.frombuffer(dtype) (BYTES: the length-prefixed elements), else np.array(data).
- Non-200 answers raise with json.loads(body)["error"].

KServe's InferenceRESTClient (kserve python package, InferRequest.to_rest) is matched too, with
"client": "kserve" on an infer call (see infer_kserve).

Usage: python3 http_client.py HOST:PORT < calls.json; prints one JSON line per call.
"""
import gzip
import json as stdjson
import struct
import sys
import zlib

import numpy as np
import rapidjson as json
from geventhttpclient import HTTPClient
from geventhttpclient.url import URL

NP = {
    "BOOL": np.bool_, "UINT8": np.uint8, "UINT16": np.uint16, "UINT32": np.uint32, "UINT64": np.uint64,
    "INT8": np.int8, "INT16": np.int16, "INT32": np.int32, "INT64": np.int64,
    "FP16": np.float16, "FP32": np.float32, "FP64": np.float64, "BF16": np.float32, "BYTES": np.object_,
}


def to_numpy(spec):
    dt = spec["datatype"]
    if dt == "BYTES":
        return np.array([s.encode("utf-8") for s in spec["data"]], dtype=np.object_).reshape(spec["shape"])
    if dt in ("INT64", "UINT64"):
        return np.array([int(v) for v in spec["data"]], dtype=NP[dt]).reshape(spec["shape"])
    return np.array(spec["data"], dtype=NP[dt]).reshape(spec["shape"])


def serialize_bytes(arr):
    out = []
    for obj in np.nditer(arr, flags=["refs_ok"], order="C"):
        item = obj.item()
        b = item if isinstance(item, bytes) else str(item).encode("utf-8")
        out.append(struct.pack("<I", len(b)))
        out.append(b)
    return b"".join(out)


def serialize_bf16(arr):
    # tritonclient keeps the high-order 16 bits of each float32 (truncation).
    return b"".join(x.view(np.uint32).tobytes()[2:4] for x in arr.astype(np.float32).flatten())


def input_json_and_bytes(spec):
    arr = to_numpy(spec)
    tensor = {"name": spec["name"], "shape": list(arr.shape), "datatype": spec["datatype"]}
    if spec.get("binary", True):
        if spec["datatype"] == "BYTES":
            raw = serialize_bytes(arr) if arr.size > 0 else b""
        elif spec["datatype"] == "BF16":
            raw = serialize_bf16(arr) if arr.size > 0 else b""
        else:
            raw = arr.tobytes()
        tensor["parameters"] = {"binary_data_size": len(raw)}
        return tensor, raw
    if spec["datatype"] == "BYTES":
        tensor["data"] = [str(o.item(), encoding="utf-8") for o in np.nditer(arr, flags=["refs_ok"], order="C")]
    else:
        tensor["data"] = [v.item() for v in arr.flatten()]
    return tensor, None


def infer_kserve(client, base, call):
    """What KServe's InferenceRESTClient (python/kserve/kserve/inference_client.py, v2 protocol)
    sends from InferRequest.to_rest(): {"id" (a uuid4 when unset), "model_name", "inputs",
    "outputs"?, "parameters"?} compact (orjson); inputs whose raw data is set go after the JSON,
    with Inference-Header-Content-Length and Content-Type: application/octet-stream; FP16 is refused
    as JSON, so it is always raw. The answer's JSON length is that header, else the whole body; an
    error's message is read only when Content-Type is exactly application/json."""
    pairs = [input_json_and_bytes({**s, "binary": s.get("binary", s["datatype"] == "FP16")}) for s in call["inputs"]]
    request = {"id": call.get("request_id") or "0b6a6b5e-3f1c-4a53-9d4e-2f7a1c9e8d10", "model_name": call["model"], "inputs": [t for t, _ in pairs]}
    if call.get("outputs"):
        request["outputs"] = [{"name": o["name"], "parameters": {"binary_data": o.get("binary", False)}} for o in call["outputs"]]
    raws = [raw for _, raw in pairs if raw is not None]
    request_json = stdjson.dumps(request, separators=(",", ":")).encode()
    headers = {}
    body = request_json
    if raws:
        body = b"".join([request_json] + raws)
        headers["Inference-Header-Content-Length"] = str(len(request_json))
        headers["content-type"] = "application/octet-stream"
    response = client.post(f"{base}/v2/models/{call['model']}/infer", body=body, headers=headers)
    if response.status_code != 200:
        content_type = response.get("Content-Type")
        body = response.read()
        return {"status": response.status_code, "content_type": content_type, "error": stdjson.loads(body)["error"] if content_type == "application/json" else None}
    return read_result(response, call)


def infer(client, base, call):
    if call.get("client") == "kserve":
        return infer_kserve(client, base, call)
    request, parameters = {}, {}
    if call.get("request_id"):
        request["id"] = call["request_id"]
    pairs = [input_json_and_bytes(s) for s in call["inputs"]]
    request["inputs"] = [t for t, _ in pairs]
    outputs = call.get("outputs")
    if outputs:
        request["outputs"] = [{"name": o["name"], "parameters": {"binary_data": o.get("binary", True)}} for o in outputs]
    else:
        parameters["binary_data_output"] = True
    if parameters:
        request["parameters"] = parameters
    request_json = json.dumps(request)
    chunks = [request_json.encode()] + [raw for _, raw in pairs if raw is not None]
    body = b"".join(chunks)
    headers = {}
    if len(chunks) > 1:
        headers["Inference-Header-Content-Length"] = len(request_json)
    comp = call.get("request_compression")
    if comp == "gzip":
        headers["Content-Encoding"] = "gzip"
        body = gzip.compress(body)
    elif comp == "deflate":
        headers["Content-Encoding"] = "deflate"
        body = zlib.compress(body)
    if call.get("response_compression"):
        headers["Accept-Encoding"] = call["response_compression"]
    version = call.get("version", "")
    uri = f"{base}/v2/models/{call['model']}/versions/{version}/infer" if version else f"{base}/v2/models/{call['model']}/infer"
    response = client.post(uri, body=body, headers=headers)
    return read_result(response, call)


def read_result(response, call):
    if response.status_code != 200:
        return {"status": response.status_code, "error": json.loads(response.read())["error"]}
    header_length = response.get("Inference-Header-Content-Length")
    content = response.read()
    encoding = response.get("Content-Encoding")
    if encoding == "gzip":
        content = gzip.decompress(content)
    elif encoding == "deflate":
        content = zlib.decompress(content)
    if header_length is None:
        result, buffer = json.loads(content), b""
    else:
        n = int(header_length)
        result, buffer = json.loads(content[:n]), content[n:]
    at, where = 0, {}
    for o in result["outputs"]:
        size = (o.get("parameters") or {}).get("binary_data_size")
        if size is not None:
            where[o["name"]] = (at, size)
            at += size
    outs = {}
    for o in result["outputs"]:
        name, dt = o["name"], o["datatype"]
        if name in where:
            start, size = where[name]
            raw = buffer[start:start + size]
            if dt == "BYTES":
                arr = deserialize_bytes(raw)
            else:
                arr = np.frombuffer(raw, dtype=NP[dt])
        else:
            arr = np.array(o["data"], dtype=NP[dt])
        arr = arr.reshape(o["shape"])
        outs[name] = {
            "datatype": dt,
            "shape": list(arr.shape),
            "binary": name in where,
            "values": [v.decode("utf-8") if isinstance(v, bytes) else v for v in arr.flatten().tolist()] if dt == "BYTES" else None,
            "hex": None if dt == "BYTES" else arr.tobytes().hex(),
        }
    return {"status": 200, "id": result.get("id"), "model_name": result["model_name"], "model_version": result["model_version"],
            "content_encoding": encoding, "outputs": outs}


def deserialize_bytes(raw):
    out, at = [], 0
    while at < len(raw):
        (n,) = struct.unpack_from("<I", raw, at)
        at += 4
        out.append(bytes(raw[at:at + n]))
        at += n
    return np.array(out, dtype=np.object_)


def get_json(client, uri):
    response = client.get(uri)
    body = response.read()
    return {"status": response.status_code, "body": json.loads(body) if body else None}


def main():
    address = sys.argv[1]
    url = URL("http://" + address)
    client = HTTPClient.from_url(url, concurrency=1, connection_timeout=60.0, network_timeout=60.0)
    base = url.request_uri.rstrip("/")
    for call in stdjson.load(sys.stdin):
        op = call["op"]
        if op == "infer":
            out = infer(client, base, call)
        elif op == "live":
            out = {"status": client.get(f"{base}/v2/health/live").status_code}
        elif op == "server_metadata":
            out = get_json(client, f"{base}/v2")
        elif op == "metadata":
            out = get_json(client, f"{base}/v2/models/{call['model']}")
        elif op == "model_ready":
            out = {"status": client.get(f"{base}/v2/models/{call['model']}/ready").status_code}
        elif op == "config":
            out = get_json(client, f"{base}/v2/models/{call['model']}/config")
        elif op == "stats":
            out = get_json(client, f"{base}/v2/models/{call['model']}/stats" if call.get("model") else f"{base}/v2/models/stats")
        elif op == "index":
            response = client.post(f"{base}/v2/repository/index", body="")
            out = {"status": response.status_code, "body": json.loads(response.read())}
        else:
            raise SystemExit(f"unknown op {op}")
        print(stdjson.dumps(out), flush=True)
    client.close()


if __name__ == "__main__":
    main()
