"""The floor of a Python gRPC call here: client CPU per 100 KB call, unary futures vs one bidi
stream; and unary calls by request size (the fixed part per call against the part per byte).

A generic grpc.aio server in a child process answers 10 bytes per request; the
client keeps 16 calls in flight, as the broker does. What the broker cannot
go below per frame with grpcio (#19). Last, the same 100 KB calls to a synchronous
server whose handler takes 40 ms: what broker_bench's (c) and (d) could reach with no
Kafka and no vspd around the calls. Run: .venv/bin/python -m bench.grpc_floor
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import queue
import sys
import threading
import time

import grpc

from bench.support import print_table
from tests.support.tansu import free_port

IN_FLIGHT = 16
PAYLOAD = os.urandom(100_000)
SIZES = (10, 100_000, 400_000, 1_600_000)
SLOW_S = 0.040


def _serve(port: int, ready: multiprocessing.synchronize.Event) -> None:
    async def unary(request: bytes, _context: object) -> bytes:
        return request[:10]

    async def stream(requests: object, _context: object):  # type: ignore[no-untyped-def]
        async for request in requests:  # type: ignore[attr-defined]
            yield request[:10]

    async def main() -> None:
        server = grpc.aio.server(options=[("grpc.max_receive_message_length", 32 << 20)])
        handlers = {
            "U": grpc.unary_unary_rpc_method_handler(unary),
            "S": grpc.stream_stream_rpc_method_handler(stream),
        }
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("b.B", handlers),))
        server.add_insecure_port(f"127.0.0.1:{port}")
        await server.start()
        ready.set()
        await server.wait_for_termination()

    asyncio.run(main())


def _serve_slow(port: int, ready: multiprocessing.synchronize.Event) -> None:
    """A synchronous server with a thread pool, as vspd's processor is, whose handler takes
    40 ms (a sleep, as bench.plugins:forty_ms): the floor of broker_bench's (c) and (d)."""
    from concurrent.futures import ThreadPoolExecutor

    def slow(request: bytes, _context: object) -> bytes:
        time.sleep(SLOW_S)
        return request[:10]

    server = grpc.server(
        ThreadPoolExecutor(32),
        options=[
            ("grpc.max_receive_message_length", 32 << 20),
            ("grpc.http2.max_frame_size", 16 * 1024 * 1024 - 1),
        ],
    )
    handlers = {"U": grpc.unary_unary_rpc_method_handler(slow)}
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("b.B", handlers),))
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    ready.set()
    server.wait_for_termination()


def slow_floor() -> list[list[str]]:
    """16 calls of 100 KB in flight to the 40 ms server: calls/s against the nominal 400."""
    port = free_port()
    ready = multiprocessing.Event()
    server = multiprocessing.Process(target=_serve_slow, args=(port, ready), daemon=True)
    server.start()
    ready.wait(30)
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    grpc.channel_ready_future(channel).result(10)
    unary(channel, 200)  # warm up
    rows = []
    nominal = IN_FLIGHT / SLOW_S
    for _ in range(2):
        rate, cpu_us = unary(channel, 3000)
        latency_ms = IN_FLIGHT / rate * 1000  # Little's law: in flight / throughput
        rows.append([f"{rate:.0f}", f"{rate / nominal:.2f}", f"{latency_ms:.1f}", f"{cpu_us:.0f}"])
    channel.close()
    server.terminate()
    return rows


def _cpu() -> float:
    times = os.times()
    return times.user + times.system


def unary(channel: grpc.Channel, count: int, payload: bytes = PAYLOAD) -> tuple[float, float]:
    call = channel.unary_unary("/b.B/U")
    slots = threading.Semaphore(IN_FLIGHT)
    done = threading.Event()
    finished = [0]

    def on_done(future: grpc.Future) -> None:
        future.result()
        slots.release()
        finished[0] += 1
        if finished[0] == count:
            done.set()

    t0, c0 = time.perf_counter(), _cpu()
    for _ in range(count):
        slots.acquire()
        call.future(payload).add_done_callback(on_done)
    done.wait()
    return count / (time.perf_counter() - t0), (_cpu() - c0) / count * 1e6


def stream(channel: grpc.Channel, count: int) -> tuple[float, float]:
    call = channel.stream_stream("/b.B/S")
    slots: queue.Queue[None] = queue.Queue(IN_FLIGHT)

    def requests():  # type: ignore[no-untyped-def]
        for _ in range(count):
            slots.put(None)
            yield PAYLOAD

    t0, c0 = time.perf_counter(), _cpu()
    for _answer in call(requests()):
        slots.get()
    return count / (time.perf_counter() - t0), (_cpu() - c0) / count * 1e6


def aio_unary(port: int, count: int) -> tuple[float, float]:
    """grpc.aio's client on its own event loop thread, fed from another thread as the broker would."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    holder: dict[str, object] = {}

    async def connect() -> None:
        channel = grpc.aio.insecure_channel(
            f"127.0.0.1:{port}", options=[("grpc.max_send_message_length", 32 << 20)]
        )
        await channel.channel_ready()
        holder["channel"] = channel
        holder["call"] = channel.unary_unary("/b.B/U")

    asyncio.run_coroutine_threadsafe(connect(), loop).result(10)
    call = holder["call"]
    slots = threading.Semaphore(IN_FLIGHT)
    done = threading.Event()
    finished = [0]

    async def one() -> None:
        await call(PAYLOAD)  # type: ignore[operator]
        slots.release()
        finished[0] += 1
        if finished[0] == count:
            done.set()

    tasks: set[asyncio.Task[None]] = set()

    def start_one() -> None:
        task = loop.create_task(one())
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    t0, c0 = time.perf_counter(), _cpu()
    for _ in range(count):
        slots.acquire()
        loop.call_soon_threadsafe(start_one)
    done.wait()
    result = count / (time.perf_counter() - t0), (_cpu() - c0) / count * 1e6
    asyncio.run_coroutine_threadsafe(holder["channel"].close(), loop).result(10)  # type: ignore[attr-defined]
    loop.call_soon_threadsafe(loop.stop)
    return result


def main() -> int:
    port = free_port()
    ready = multiprocessing.Event()
    server = multiprocessing.Process(target=_serve, args=(port, ready), daemon=True)
    server.start()
    ready.wait(30)
    channel = grpc.insecure_channel(
        f"127.0.0.1:{port}",
        options=[
            ("grpc.max_send_message_length", 32 << 20),
            ("grpc.http2.max_frame_size", 16 * 1024 * 1024 - 1),  # as the broker's channel
        ],
    )
    grpc.channel_ready_future(channel).result(10)
    rows = []
    for name, run in (("unary", unary), ("stream", stream), ("unary", unary), ("stream", stream)):
        rate, cpu_us = run(channel, 5000)
        rows.append([name, f"{rate:.0f}", f"{cpu_us:.0f}"])
    for _ in range(2):
        rate, cpu_us = aio_unary(port, 5000)
        rows.append(["unary, grpc.aio client", f"{rate:.0f}", f"{cpu_us:.0f}"])
    # What a call costs by its size: a fixed part per call, which a batch of frames pays
    # once, and a part per byte, which it does not save.
    sized = []
    for size in (*SIZES, *SIZES):
        count = max(300, 5000 * 100_000 // max(size, 100_000))
        rate, cpu_us = unary(channel, count, os.urandom(size))
        per_100_kb = cpu_us / max(size / 100_000, 1.0)
        sized.append([f"{size:,}", f"{rate:.0f}", f"{cpu_us:.0f}", f"{per_100_kb:.0f}"])
    channel.close()
    server.terminate()
    print(f"gRPC, 100 KB requests, {IN_FLIGHT} in flight, one client thread")
    print_table(["mode", "calls/s", "client CPU µs/call"], rows)
    print(f"\ngRPC unary calls by request size, {IN_FLIGHT} in flight")
    print_table(["request bytes", "calls/s", "client CPU µs/call", "µs per 100 KB"], sized)
    print(f"\ngRPC unary calls of 100 KB, {IN_FLIGHT} in flight, to a 40 ms handler (sync server)")
    print_table(
        ["calls/s", f"/ nominal {IN_FLIGHT / SLOW_S:.0f}", "call ms", "client CPU µs/call"],
        slow_floor(),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
