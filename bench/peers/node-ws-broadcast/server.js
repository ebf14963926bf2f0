// The comparison peer for bench/fanout.sh: the broadcast loop of the `ws`
// README ("Server broadcast"), one WebSocketServer per channel path, as the
// README's "Multiple servers sharing a single HTTP/S server" shows. It has
// the surface `wsc bench --fanout` uses on wsd:
//   - a WebSocket upgrade on /channels/NAME subscribes to NAME;
//   - a message from a client goes to every open client of NAME (the
//     sender too, as on wsd);
//   - POST /channels/NAME broadcasts the body (text for text/*, binary
//     otherwise) and answers {"delivered":N}.
// Idiomatic on purpose, not tuned: `send` frames the message again for
// every client, and nothing bounds a slow client's bufferedAmount.
//
// Usage: node server.js [HOST:PORT]   (default 127.0.0.1:9001)
'use strict';

const http = require('node:http');
const { WebSocketServer, WebSocket } = require('ws');

// wsd's default max_message_size.
const MAX_MESSAGE = 1 << 20;

const listen = process.argv[2] || '127.0.0.1:9001';
const colon = listen.lastIndexOf(':');
const host = listen.slice(0, colon);
const port = Number(listen.slice(colon + 1));
if (colon < 0 || !Number.isInteger(port) || port <= 0 || port > 65535) {
  console.error(`node-ws-broadcast: bad listen address ${JSON.stringify(listen)}`);
  process.exit(2);
}

/** Channel name -> its WebSocketServer (whose `clients` are the subscribers). */
const channels = new Map();

function channelOf(url) {
  const path = (url || '').split('?')[0];
  const name = path.startsWith('/channels/') ? path.slice('/channels/'.length) : '';
  return name === '' ? null : name;
}

function broadcast(name, data, isBinary) {
  const wss = channels.get(name);
  if (!wss) return 0;
  let delivered = 0;
  wss.clients.forEach(function each(client) {
    if (client.readyState === WebSocket.OPEN) {
      client.send(data, { binary: isBinary });
      delivered++;
    }
  });
  return delivered;
}

function channel(name) {
  let wss = channels.get(name);
  if (!wss) {
    wss = new WebSocketServer({ noServer: true, maxPayload: MAX_MESSAGE });
    wss.on('connection', function connection(ws) {
      ws.on('error', () => {});
      ws.on('message', function message(data, isBinary) {
        broadcast(name, data, isBinary);
      });
    });
    channels.set(name, wss);
  }
  return wss;
}

function reply(res, status, body, type) {
  res.writeHead(status, {
    'Content-Type': type || 'text/plain',
    'Content-Length': Buffer.byteLength(body),
  });
  res.end(body);
}

const server = http.createServer(function request(req, res) {
  const name = channelOf(req.url);
  if (!name) return reply(res, 404, 'use /channels/NAME\n');
  if (req.method !== 'POST') return reply(res, 405, 'GET with an upgrade, or POST\n');
  const chunks = [];
  let size = 0;
  req.on('data', (chunk) => {
    size += chunk.length;
    if (size > MAX_MESSAGE) {
      reply(res, 413, 'the body is too big\n');
      req.destroy();
    } else {
      chunks.push(chunk);
    }
  });
  req.on('end', () => {
    if (size > MAX_MESSAGE) return;
    const text = (req.headers['content-type'] || '').toLowerCase().startsWith('text/');
    const delivered = broadcast(name, Buffer.concat(chunks), !text);
    reply(res, 200, JSON.stringify({ delivered }), 'application/json');
  });
});

server.on('upgrade', function upgrade(req, socket, head) {
  socket.on('error', () => {});
  const name = channelOf(req.url);
  if (!name) {
    socket.end('HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n');
    return;
  }
  const wss = channel(name);
  wss.handleUpgrade(req, socket, head, function done(ws) {
    wss.emit('connection', ws, req);
  });
});

server.listen(port, host, () => {
  console.error(`node-ws-broadcast listening on ws://${listen}/channels/NAME`);
});
