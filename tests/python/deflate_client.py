"""An independent permessage-deflate client: Python `websockets`, which
offers compression by default. Driven by tests/python_websockets.rs.

    deflate_client.py echo URL        sends messages, prints each reply
    deflate_client.py subscribe URL N prints N deliveries of a channel

Prints one JSON object per line: first the negotiated extension header, then
what it received (text as text, binary as hex)."""

import asyncio
import json
import sys

from websockets.asyncio.client import connect


def emit(**fields):
    print(json.dumps(fields), flush=True)


async def main(mode, url, count):
    async with connect(url, open_timeout=10, max_size=2**24) as ws:
        emit(extensions=ws.response.headers.get("Sec-WebSocket-Extensions"),
             negotiated=[type(e).__name__ for e in ws.protocol.extensions])
        if mode == "echo":
            messages = [
                "hello",
                json.dumps([{"symbol": "BTC-USD", "price": 40000 + i, "seq": i} for i in range(400)]),
                bytes(range(256)) * 64,
                "é" * 5000,
            ]
            for message in messages:
                await ws.send(message)
                reply = await asyncio.wait_for(ws.recv(), 10)
                if isinstance(reply, bytes):
                    emit(binary=reply.hex())
                else:
                    emit(text=reply)
        else:
            emit(ready=True)
            for _ in range(count):
                delivery = await asyncio.wait_for(ws.recv(), 10)
                emit(text=delivery) if isinstance(delivery, str) else emit(binary=delivery.hex())


if __name__ == "__main__":
    mode, url = sys.argv[1], sys.argv[2]
    count = int(sys.argv[3]) if len(sys.argv) > 3 else 0
    asyncio.run(main(mode, url, count))
