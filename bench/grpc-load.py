"""Load for bench/rest.bench.ts's external-client rows: KServe v2 ModelInfer calls over gRPC with
the real grpcio (its C core, as tritonclient.grpc uses), raw_input_contents as tritonclient sends
them, for a fixed time, from a process of its own (Debian's python3-grpcio, python3-grpc-tools).

Usage: python3 grpc-load.py PROTO_DIR ADDRESS MODEL INPUT DIMS(1,64) INPUT_FILE CONCURRENCY SECONDS

At 1 caller it calls the blocking stub, as tritonclient.grpc's `infer()` does; at more, the
asyncio stub with that many callers. Prints one JSON line, {"calls", "seconds", "p50_ms",
"p99_ms", "errors"}: latencies per call, from the request's send to its answer, over every call
of the window. The stubs are generated as test/protocols/grpc_client.py generates them.
"""
import asyncio
import json
import os
import sys
import time

import grpc

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "test", "protocols"))
from grpc_client import stubs  # noqa: E402


def request():
    proto_dir, _, model, name, dims, path = sys.argv[1:7]
    pb, pb_grpc = stubs(proto_dir)
    with open(path, "rb") as f:
        raw = f.read()
    return pb_grpc, pb.ModelInferRequest(model_name=model, inputs=[pb.ModelInferRequest.InferInputTensor(name=name, datatype="FP32", shape=[int(d) for d in dims.split(",")])], raw_input_contents=[raw])


def report(lat, took, errors):
    lat.sort()
    pick = lambda p: lat[min(len(lat) - 1, int(p / 100 * len(lat)))] * 1000 if lat else float("nan")
    print(json.dumps({"calls": len(lat), "seconds": took, "p50_ms": pick(50), "p99_ms": pick(99), "errors": errors}))


def sequential(address, seconds):
    pb_grpc, req = request()
    with grpc.insecure_channel(address, options=[("grpc.max_receive_message_length", -1)]) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        for _ in range(20):
            stub.ModelInfer(req)
        lat, errors = [], 0
        t0 = time.perf_counter()
        end = t0 + float(seconds)
        while time.perf_counter() < end:
            t = time.perf_counter()
            try:
                stub.ModelInfer(req)
                lat.append(time.perf_counter() - t)
            except grpc.RpcError:
                errors += 1
        report(lat, time.perf_counter() - t0, errors)


async def concurrent(address, conc, seconds):
    pb_grpc, req = request()
    async with grpc.aio.insecure_channel(address, options=[("grpc.max_receive_message_length", -1)]) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        for _ in range(20):  # warm: the connection, the server's JIT
            await stub.ModelInfer(req)
        lat, errors = [], 0
        end = time.perf_counter() + float(seconds)

        async def caller():
            nonlocal errors
            while time.perf_counter() < end:
                t = time.perf_counter()
                try:
                    await stub.ModelInfer(req)
                    lat.append(time.perf_counter() - t)
                except grpc.aio.AioRpcError:
                    errors += 1

        t0 = time.perf_counter()
        await asyncio.gather(*(caller() for _ in range(int(conc))))
        took = time.perf_counter() - t0
    report(lat, took, errors)


address, conc, seconds = sys.argv[2], int(sys.argv[7]), sys.argv[8]
if conc == 1:
    sequential(address, seconds)
else:
    asyncio.run(concurrent(address, conc, seconds))
