#!/usr/bin/env python3
"""Opens N mutual-TLS connections to a proxy and holds them idle.

Each connection completes the TLS handshake with the client certificate,
sends one HTTP/1.1 keep-alive request and reads the whole response, then
sits idle: what a proxy holds for a keep-alive client between requests.
When all connections are up the program prints one line
`READY open=<n> failed=<n>` and keeps them open until stdin closes or
--hold seconds pass, whichever is first; then it closes them and prints
`DONE still_open=<n>` (connections the server had not closed meanwhile).

Only loopback targets are accepted.
"""
import argparse
import asyncio
import ipaddress
import resource
import ssl
import sys
import time


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--host", default="127.0.0.1", help="address to connect to (loopback only)")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--sni", default="bench.local", help="TLS server name and Host header")
    p.add_argument("--cacert", required=True)
    p.add_argument("--cert", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("-n", "--connections", type=int, default=5000)
    p.add_argument("--concurrency", type=int, default=64, help="handshakes in flight at once")
    p.add_argument("--hold", type=float, default=120.0, help="longest time to hold, in seconds")
    p.add_argument("--timeout", type=float, default=120.0, help="longest time to open them all")
    return p.parse_args()


async def open_one(args, ctx, sem, conns, failures):
    async with sem:
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(
                    args.host, args.port, ssl=ctx, server_hostname=args.sni
                ),
                timeout=30,
            )
            request = f"GET / HTTP/1.1\r\nHost: {args.sni}\r\n\r\n".encode()
            writer.write(request)
            await writer.drain()
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=30)
            status = head.split(b" ", 2)[1]
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value.strip())
            if length:
                await asyncio.wait_for(reader.readexactly(length), timeout=30)
            if status != b"200":
                raise RuntimeError(f"status {status.decode(errors='replace')}")
            conns.append((reader, writer))
        except Exception as e:  # noqa: BLE001 - counted and reported
            failures.append(f"{type(e).__name__}: {e}")


async def wait_stdin_closed():
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)


async def main() -> int:
    args = parse_args()
    if not ipaddress.ip_address(args.host).is_loopback:
        print(f"refusing non-loopback target {args.host}", file=sys.stderr)
        return 2
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = args.connections + 256
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=args.cacert)
    ctx.load_cert_chain(args.cert, args.key)
    ctx.set_alpn_protocols(["http/1.1"])

    conns, failures = [], []
    sem = asyncio.Semaphore(args.concurrency)
    started = time.monotonic()
    tasks = [
        asyncio.create_task(open_one(args, ctx, sem, conns, failures))
        for _ in range(args.connections)
    ]
    done, pending = await asyncio.wait(tasks, timeout=args.timeout)
    for t in pending:
        t.cancel()
    elapsed = time.monotonic() - started
    print(
        f"READY open={len(conns)} failed={len(failures) + len(pending)} seconds={elapsed:.1f}",
        flush=True,
    )
    if failures:
        print(f"first failure: {failures[0]}", file=sys.stderr, flush=True)

    try:
        await asyncio.wait_for(wait_stdin_closed(), timeout=args.hold)
    except asyncio.TimeoutError:
        pass
    still_open = sum(1 for r, _ in conns if not r.at_eof())
    for _, w in conns:
        w.close()
    print(f"DONE still_open={still_open}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
