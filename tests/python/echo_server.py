"""An independent permessage-deflate server: Python `websockets`, which
agrees to compression by default (a 4 KiB window both ways, context
takeover). Driven by tests/wsc_deflate.rs, for `wsc --compress`.

    echo_server.py        listens on 127.0.0.1, a free port

Echoes every message as it came (text as text, binary as binary). Prints
one JSON object per line: first {"port": N}, then for each connection the
extension header the client offered and the one answered, and when it ends
the number of messages it echoed. Runs until stdin closes, so it never
outlives the test that started it."""

import asyncio
import json
import sys

from websockets.asyncio.server import serve


def emit(**fields):
    print(json.dumps(fields), flush=True)


async def echo(ws):
    emit(offer=ws.request.headers.get("Sec-WebSocket-Extensions"),
         answer=ws.response.headers.get("Sec-WebSocket-Extensions"))
    echoed = 0
    async for message in ws:
        await ws.send(message)
        echoed += 1
    emit(echoed=echoed)


async def main():
    async with serve(echo, "127.0.0.1", 0, max_size=2**24) as server:
        emit(port=server.sockets[0].getsockname()[1])
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)


if __name__ == "__main__":
    asyncio.run(main())
