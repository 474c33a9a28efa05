"""An emulated network link for the benchmark: a TCP relay that delivers each
byte no earlier than DELAY after it arrived, at no more than RATE, in each
direction. (This machine's kernel has no netem qdisc, so the shaping is done
in user space, on 127.0.0.1.)

    python bench/link.py LISTEN_PORT TARGET_PORT [--mbit 200] [--delay-ms 10]
"""

import argparse
import asyncio
import time


async def pipe(reader, writer, rate, delay):
    """Copy reader -> writer through a delay line with a token bucket."""
    queue = asyncio.Queue()

    async def ingest():
        while True:
            data = await reader.read(64 * 1024)
            await queue.put((time.monotonic() + delay, data))
            if not data:
                return

    async def deliver():
        next_free = time.monotonic()
        while True:
            due, data = await queue.get()
            now = time.monotonic()
            if due > now:
                await asyncio.sleep(due - now)
            if not data:
                writer.close()
                return
            # Serialisation at RATE: this chunk leaves when the link is free.
            next_free = max(next_free, time.monotonic()) + len(data) / rate
            wait = next_free - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            writer.write(data)
            await writer.drain()

    await asyncio.gather(ingest(), deliver())


async def main(listen, target, rate, delay):
    async def handle(client_r, client_w):
        try:
            server_r, server_w = await asyncio.open_connection("127.0.0.1", target)
        except OSError:
            client_w.close()
            return
        try:
            await asyncio.gather(pipe(client_r, server_w, rate, delay),
                                 pipe(server_r, client_w, rate, delay))
        except (ConnectionError, OSError):
            pass
        finally:
            for w in (client_w, server_w):
                w.close()

    server = await asyncio.start_server(handle, "127.0.0.1", listen)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("listen", type=int)
    ap.add_argument("target", type=int)
    ap.add_argument("--mbit", type=float, default=200)
    ap.add_argument("--delay-ms", type=float, default=10)
    a = ap.parse_args()
    asyncio.run(main(a.listen, a.target, a.mbit * 1e6 / 8, a.delay_ms / 1000))
