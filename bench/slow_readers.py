#!/usr/bin/env python3
"""Slow readers for bench/perf.sh: N connections to one server, each asking
for a range of the file and reading it slowly for a bounded time, so the
server holds N streams open at once (its peak RSS is what perf.sh reads).

    python3 bench/slow_readers.py --port 8080 --target /big.bin \
        --file /path/big.bin --readers 256 --duration 10

Reader i asks for --range bytes at offset i * (size / N), aligned down to
1 MiB, and reads --rate bytes per second in ten slices a second, comparing
each slice with the file on disk. Each socket gets a small receive buffer
(SO_RCVBUF, no autotuning) so the server meets back-pressure at once
instead of pushing megabytes into the kernel. Prints one line:

    SLOW readers=N ok=N bytes=N mismatches=N errors=N
"""

import argparse
import asyncio
import os
import socket
import sys

MIB = 1024 * 1024


async def reader(i, args, size, fd, stop_at, stats):
    offset = (i * (size // args.readers)) // MIB * MIB
    length = min(args.range, size - offset)
    if length <= 0:
        stats["errors"] += 1
        return
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, args.rcvbuf)
    sock.setblocking(False)
    try:
        await asyncio.wait_for(loop.sock_connect(sock, ("127.0.0.1", args.port)), 10)
        r, w = await asyncio.open_connection(sock=sock, limit=64 * 1024)
    except (OSError, asyncio.TimeoutError) as err:
        print(f"reader {i}: connect: {err}", file=sys.stderr)
        stats["errors"] += 1
        sock.close()
        return
    try:
        w.write(
            (
                f"GET {args.target} HTTP/1.1\r\nHost: 127.0.0.1:{args.port}\r\n"
                f"Range: bytes={offset}-{offset + length - 1}\r\n\r\n"
            ).encode()
        )
        await w.drain()
        head = await asyncio.wait_for(r.readuntil(b"\r\n\r\n"), 10)
        status = head.split(b" ", 2)[1]
        if status != b"206":
            print(f"reader {i}: status {status.decode()}", file=sys.stderr)
            stats["errors"] += 1
            return
        got = 0
        slice_bytes = max(1, args.rate // 10)
        while got < length and loop.time() < stop_at:
            want = min(slice_bytes, length - got)
            data = await asyncio.wait_for(r.readexactly(want), 10)
            if data != os.pread(fd, want, offset + got):
                stats["mismatches"] += 1
                print(f"reader {i}: bytes differ near {offset + got}", file=sys.stderr)
                return
            got += want
            stats["bytes"] += want
            await asyncio.sleep(0.1)
        stats["ok"] += 1
    except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError, IndexError) as err:
        print(f"reader {i}: {err!r}", file=sys.stderr)
        stats["errors"] += 1
    finally:
        w.close()


async def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--target", required=True, help="request target, e.g. /big.bin")
    p.add_argument("--file", required=True, help="the same file on disk")
    p.add_argument("--readers", type=int, default=256)
    p.add_argument("--duration", type=float, default=10.0)
    p.add_argument("--range", type=int, default=4 * MIB, help="bytes asked per reader")
    p.add_argument("--rate", type=int, default=256 * 1024, help="bytes/s per reader")
    p.add_argument("--rcvbuf", type=int, default=64 * 1024)
    args = p.parse_args()
    size = os.path.getsize(args.file)
    fd = os.open(args.file, os.O_RDONLY)
    stats = {"ok": 0, "bytes": 0, "mismatches": 0, "errors": 0}
    stop_at = asyncio.get_running_loop().time() + args.duration
    await asyncio.gather(
        *(reader(i, args, size, fd, stop_at, stats) for i in range(args.readers))
    )
    print(
        f"SLOW readers={args.readers} ok={stats['ok']} bytes={stats['bytes']} "
        f"mismatches={stats['mismatches']} errors={stats['errors']}"
    )
    return 0 if stats["ok"] == args.readers else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
