// The scale-out peer of bench/redis.sh: Socket.IO 4 with the official Redis
// adapter (@socket.io/redis-adapter), the way its documentation sets it up.
// Several instances share one Redis; each subscriber joins the room named by
// its `channel` query parameter; `POST /channels/NAME` emits the body to that
// room as event "m", on every instance through Redis.
//
//   node server.js 127.0.0.1:19041 redis://127.0.0.1:19031
const http = require("http");
const { Server } = require("socket.io");
const { createAdapter } = require("@socket.io/redis-adapter");
const { createClient } = require("redis");

const [hostPort, redisUrl] = process.argv.slice(2);
const [host, port] = hostPort.split(":");

async function main() {
  const pub = createClient({ url: redisUrl });
  const sub = pub.duplicate();
  await Promise.all([pub.connect(), sub.connect()]);

  const server = http.createServer((req, res) => {
    const match = req.method === "POST" && req.url.match(/^\/channels\/([^/?]+)$/);
    if (!match) {
      res.writeHead(404, { "content-length": 0 }).end();
      return;
    }
    const chunks = [];
    req.on("data", (c) => chunks.push(c));
    req.on("end", () => {
      io.to(match[1]).emit("m", Buffer.concat(chunks).toString());
      const body = '{"ok":true}';
      res.writeHead(200, { "content-type": "application/json", "content-length": body.length }).end(body);
    });
  });
  const io = new Server(server, { transports: ["websocket"], adapter: createAdapter(pub, sub) });
  io.on("connection", (socket) => {
    const channel = socket.handshake.query.channel;
    if (channel) socket.join(channel);
  });
  server.listen(Number(port), host);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
