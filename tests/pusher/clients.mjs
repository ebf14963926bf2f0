// pusher-js, Laravel Echo and the `pusher` server SDK (all unmodified,
// pinned in package-lock.json) against a real wsd. Each suite prints
// `ok - ...` per check; tests/pusher.rs runs them and asserts on the lines.
import crypto from 'node:crypto';
import http from 'node:http';
import Echo from 'laravel-echo';
import Pusher from 'pusher-js';
import PusherServer from 'pusher';
import {
  APP, QUIET, client, connected, fail, main, next, nextError, ok, sdk, subscribed, within,
} from './common.mjs';

async function basics(host, port) {
  const server = sdk(host, port);
  const a = client(host, port);
  const b = client(host, port);
  await Promise.all([connected(a), connected(b)]);
  if (!/^\d+\.\d+$/.test(a.connection.socket_id)) fail(`socket_id ${a.connection.socket_id}`);
  ok(`connection_established with socket_id ${a.connection.socket_id}`);

  const lobbyA = await subscribed(a, 'lobby');
  const lobbyB = await subscribed(b, 'lobby');
  let got = next(lobbyA, 'greet');
  await server.trigger('lobby', 'greet', { msg: 'hi' });
  if ((await got).data.msg !== 'hi') fail('greet data');
  ok('public subscribe, then an SDK trigger, received');

  const orders = await subscribed(a, 'private-orders');
  got = next(orders, 'shipped');
  await server.trigger('private-orders', 'shipped', { id: 7 });
  if ((await got).data.id !== 7) fail('shipped data');
  ok('private channel authorized with the SDK authorizeChannel, event received');

  const forged = client(host, port, {
    authorizer: (_, callback) => callback(null, { auth: `${APP.key}:${'0'.repeat(64)}` }),
  });
  const refused = forged.subscribe('private-orders');
  const error = await within('subscription_error', new Promise((resolve) => {
    refused.bind('pusher:subscription_error', resolve);
    refused.bind('pusher:subscription_succeeded', () => resolve({ status: 'succeeded?!' }));
  }));
  if (error.status !== 401 || error.type !== 'AuthError') fail(`refusal ${JSON.stringify(error)}`);
  if (refused.subscribed) fail('a forged subscription counts as subscribed');
  ok('a wrong channel signature is refused (pusher:subscription_error, status 401)');
  forged.disconnect();

  const b1 = next(lobbyA, 'b1');
  const b2 = next(orders, 'b2');
  await server.triggerBatch([
    { channel: 'lobby', name: 'b1', data: JSON.stringify({ n: 1 }) },
    { channel: 'private-orders', name: 'b2', data: JSON.stringify({ n: 2 }) },
  ]);
  const [r1, r2] = await Promise.all([b1, b2]);
  if (r1.data.n !== 1 || r2.data.n !== 2) fail('batch data');
  ok('batch_events: both events of a batch received');

  // Exclusion: a gets only the second event, b gets both, in order.
  const seenA = [];
  const seenB = [];
  const doneA = within('the second ex on a', new Promise((resolve) => {
    lobbyA.bind('ex', (d) => { seenA.push(d.n); if (d.n === 2) resolve(); });
  }));
  const doneB = within('the second ex on b', new Promise((resolve) => {
    lobbyB.bind('ex', (d) => { seenB.push(d.n); if (d.n === 2) resolve(); });
  }));
  await server.trigger('lobby', 'ex', { n: 1 }, { socket_id: a.connection.socket_id });
  await server.trigger('lobby', 'ex', { n: 2 });
  await Promise.all([doneA, doneB]);
  if (seenA.join() !== '2' || seenB.join() !== '1,2') fail(`exclusion: a ${seenA}, b ${seenB}`);
  ok('socket_id exclusion: the excluded connection alone misses the event');

  const cacheA = a.subscribe('cache-news');
  await within('cache_miss', new Promise((resolve) => cacheA.bind('pusher:cache_miss', resolve)));
  ok('cache channel without an event: pusher:cache_miss');
  got = next(cacheA, 'headline');
  await server.trigger('cache-news', 'headline', { title: 'first' });
  await got;
  const cacheB = b.subscribe('cache-news');
  const replayed = await next(cacheB, 'headline');
  if (replayed.data.title !== 'first') fail('cached data');
  ok('cache channel: a new subscriber gets the last event at once');

  const cached = await (await server.get({
    path: '/channels/cache-news', params: { info: 'cache' },
  })).json();
  if (cached.cache?.event !== 'headline' || JSON.parse(cached.cache.data).title !== 'first') {
    fail(`info=cache ${JSON.stringify(cached)}`);
  }
  ok('channel info=cache shows the cached event');

  // End-to-end encryption: the SDK encrypts with a key wsd never has, and
  // pusher-js decrypts with the shared secret from the auth endpoint.
  const sealed = new PusherServer({
    appId: APP.appId, key: APP.key, secret: APP.secret, host, port: String(port),
    useTLS: false, encryptionMasterKeyBase64: crypto.randomBytes(32).toString('base64'),
  });
  const secretive = client(host, port, {
    authorizer: ({ socketId, channelName }, callback) => {
      callback(null, sealed.authorizeChannel(socketId, channelName));
    },
  });
  const vault = await subscribed(secretive, 'private-encrypted-vault');
  got = next(vault, 'secret');
  await sealed.trigger('private-encrypted-vault', 'secret', { code: 42 });
  if ((await got).data.code !== 42) fail('decrypted data');
  ok('private-encrypted channel: the SDK encrypts, pusher-js decrypts, wsd passes it on');
  secretive.disconnect();

  // Client events: a and b on a private channel; never echoed to the sender.
  const chatA = await subscribed(a, 'private-chat');
  const chatB = await subscribed(b, 'private-chat');
  const firstAtA = next(chatA, 'client-typing');
  const atB = next(chatB, 'client-typing');
  chatA.trigger('client-typing', { from: 'a' });
  if ((await atB).data.from !== 'a') fail('client event at b');
  chatB.trigger('client-typing', { from: 'b' });
  if ((await firstAtA).data.from !== 'b') fail('the sender got its own client event');
  ok('client events on a private channel reach the others, not the sender');

  let err = nextError(a);
  a.send_event('client-typing', { from: 'a' }, 'lobby');
  if (!/private and presence/.test((await err).message)) fail('public client event refusal');
  ok('client events on a public channel are refused with pusher:error');

  const quiet = client(host, port, { app: QUIET });
  const quietChat = await subscribed(quiet, 'private-chat');
  err = nextError(quiet);
  quietChat.trigger('client-typing', { from: 'quiet' });
  if (!/not enabled/.test((await err).message)) fail('client events disabled refusal');
  ok('client events are refused when the app does not enable them');

  // The other app's channel of the same name is another channel.
  const quietLobby = await subscribed(quiet, 'lobby');
  let leaked = false;
  quietLobby.bind('greet', (d) => { if (d.msg !== 'quiet') leaked = true; });
  got = next(lobbyA, 'greet');
  await server.trigger('lobby', 'greet', { msg: 'again' });
  await got;
  const quietGot = next(quietLobby, 'greet');
  await sdk(host, port, QUIET).trigger('lobby', 'greet', { msg: 'quiet' });
  if ((await quietGot).data.msg !== 'quiet' || leaked) fail('apps share a channel');
  ok('two apps with a channel of the same name do not see each other');

  for (const p of [a, b, quiet]) p.disconnect();

  const stranger = new Pusher('no-such-key', {
    wsHost: host, wsPort: Number(port), forceTLS: false, enabledTransports: ['ws'],
    disableStats: true, cluster: 'mt1',
  });
  const code = await within('the 4001 refusal', new Promise((resolve) => {
    stranger.connection.bind('error', (e) => {
      const c = e?.error?.data?.code ?? e?.data?.code;
      if (c) resolve(c);
    });
  }));
  if (code !== 4001) fail(`unknown key code ${code}`);
  ok('an unknown app key is refused with 4001');
  stranger.disconnect();
}

async function presence(host, port) {
  const server = sdk(host, port);
  const echo = (user) => new Echo({
    broadcaster: 'pusher',
    key: APP.key,
    cluster: 'mt1',
    wsHost: host,
    wsPort: Number(port),
    forceTLS: false,
    enabledTransports: ['ws'],
    disableStats: true,
    Pusher,
    channelAuthorization: {
      customHandler: ({ socketId, channelName }, callback) => {
        // Only presence channels sign the member's data.
        const member = channelName.startsWith('presence-')
          ? { user_id: user.id, user_info: { name: user.name } }
          : undefined;
        callback(null, server.authorizeChannel(socketId, channelName, member));
      },
    },
  });
  const alice = echo({ id: 'alice', name: 'Alice' });
  const bob = echo({ id: 'bob', name: 'Bob' });

  const roomA = alice.join('room');
  const hereA = await within('here() for alice', new Promise((resolve) => roomA.here(resolve)));
  if (hereA.length !== 1 || hereA[0].name !== 'Alice') fail(`alice's here ${JSON.stringify(hereA)}`);
  const joining = within('joining(bob)', new Promise((resolve) => roomA.joining(resolve)));
  const roomB = bob.join('room');
  const hereB = await within('here() for bob', new Promise((resolve) => roomB.here(resolve)));
  const names = hereB.map((u) => u.name).sort().join();
  if (names !== 'Alice,Bob') fail(`bob's here ${names}`);
  if ((await joining).name !== 'Bob') fail('joining');
  ok('presence members across two Laravel Echo clients (here, joining)');

  const list = await (await server.get({
    path: '/channels', params: { filter_by_prefix: 'presence-', info: 'user_count' },
  })).json();
  if (list.channels['presence-room']?.user_count !== 2) fail(`channels ${JSON.stringify(list)}`);
  const one = await (await server.get({
    path: '/channels/presence-room', params: { info: 'user_count,subscription_count' },
  })).json();
  if (!one.occupied || one.user_count !== 2 || one.subscription_count !== 2) {
    fail(`channel ${JSON.stringify(one)}`);
  }
  const users = await (await server.get({ path: '/channels/presence-room/users' })).json();
  if (users.users.map((u) => u.id).sort().join() !== 'alice,bob') fail(`users ${JSON.stringify(users)}`);
  const empty = await (await server.get({ path: '/channels/nobody-here' })).json();
  if (empty.occupied !== false) fail(`unoccupied ${JSON.stringify(empty)}`);
  ok('channel info: /channels with user_count, /channels/NAME, /channels/NAME/users');

  const whisper = within('the whisper', new Promise((resolve) => roomA.listenForWhisper('typing', resolve)));
  roomB.whisper('typing', { name: 'Bob' });
  if ((await whisper).name !== 'Bob') fail('whisper');
  ok('Laravel Echo whisper (a client event) on a presence channel');

  const shipped = within('Echo listen', new Promise((resolve) => {
    alice.private('orders').listen('.shipped', resolve);
  }));
  // Echo subscribes asynchronously; trigger until the first one lands.
  const sub = alice.connector.pusher.channel('private-orders');
  await within('Echo private subscription', new Promise((resolve) => {
    if (sub.subscribed) resolve(); else sub.bind('pusher:subscription_succeeded', resolve);
  }));
  await server.trigger('private-orders', 'shipped', { id: 9 });
  if ((await shipped).id !== 9) fail('Echo private listen');
  ok('Laravel Echo private channel listen, SDK trigger received');

  const leaving = within('leaving(bob)', new Promise((resolve) => roomA.leaving(resolve)));
  bob.disconnect();
  if ((await leaving).name !== 'Bob') fail('leaving');
  ok('presence member_removed when a member disconnects (leaving)');
  alice.disconnect();
}

/// Signs like the SDKs do, so the checks below can break one thing at a
/// time.
function signed(method, path, body, { app = APP, timestamp, key, tamper } = {}) {
  const params = {
    auth_key: key ?? app.key,
    auth_timestamp: String(timestamp ?? Math.floor(Date.now() / 1000)),
    auth_version: '1.0',
  };
  if (body) params.body_md5 = crypto.createHash('md5').update(body).digest('hex');
  const query = Object.keys(params).sort().map((k) => `${k}=${params[k]}`).join('&');
  let signature = crypto.createHmac('sha256', app.secret)
    .update(`${method}\n${path}\n${query}`).digest('hex');
  if (tamper) signature = signature.replace(/^./, (c) => (c === '0' ? '1' : '0'));
  return `${path}?${query}&auth_signature=${signature}`;
}

async function signatures(host, port) {
  const base = `http://${host}:${port}`;
  const body = JSON.stringify({ name: 'e', channels: ['lobby'], data: '{}' });
  const post = (url, b = body) => fetch(base + url, {
    method: 'POST', body: b, headers: { 'content-type': 'application/json' },
  });
  const path = `/apps/${APP.appId}/events`;
  let res = await post(signed('POST', path, body));
  if (res.status !== 200) fail(`a good request: ${res.status} ${await res.text()}`);
  ok('a correctly signed request is accepted (200)');
  res = await post(signed('POST', path, body, { tamper: true }));
  if (res.status !== 401) fail(`bad signature: ${res.status}`);
  ok('a bad signature is refused with 401');
  res = await post(signed('POST', path, body, { timestamp: Math.floor(Date.now() / 1000) - 601 }));
  const stale = await res.text();
  if (res.status !== 401 || !/auth_timestamp/.test(stale)) fail(`stale: ${res.status} ${stale}`);
  ok('a timestamp more than 600 s old is refused with 401');
  res = await post(signed('POST', path, body, { key: 'someone-else' }));
  if (res.status !== 401) fail(`wrong key: ${res.status}`);
  ok('another auth_key is refused with 401');
  res = await post(signed('POST', path, body), body.replace('lobby', 'lobbx'));
  if (res.status !== 401 || !/body_md5/.test(await res.text())) fail(`md5: ${res.status}`);
  ok('a body that does not match body_md5 is refused with 401');
  res = await post(signed('POST', '/apps/999/events', body).replace('/apps/999', '/apps/999'));
  if (res.status !== 404) fail(`unknown app: ${res.status}`);
  res = await post(`/apps/999/events?auth_key=x`);
  if (res.status !== 404) fail(`unknown app, unsigned: ${res.status}`);
  ok('an unknown app id is 404, before any signature check');

  const server = sdk(host, port);
  const expect = async (what, status, promise) => {
    try {
      await promise;
    } catch (e) {
      if (e.status === status) return ok(what);
      fail(`${what}: ${e.status} ${e.body}`);
    }
    fail(`${what}: accepted`);
  };
  await expect('event data over 10 KB is refused with 413', 413,
    server.trigger('lobby', 'big', 'x'.repeat(10 * 1024 + 1)));
  // The SDK itself refuses over 100 channels: a hand-signed request.
  const many = Array.from({ length: 101 }, (_, i) => `c${i}`);
  const tooMany = JSON.stringify({ name: 'e', channels: many, data: '{}' });
  res = await post(signed('POST', path, tooMany), tooMany);
  if (res.status !== 400 || !/100/.test(await res.text())) fail(`101 channels: ${res.status}`);
  ok('more than 100 channels per event is refused with 400');
  const batch = Array.from({ length: 11 }, () => ({ channel: 'lobby', name: 'e', data: '{}' }));
  await expect('a batch of more than 10 events is refused with 400', 400, server.triggerBatch(batch));
  // The SDK checks names too: a hand-signed request again.
  const badName = JSON.stringify({ name: 'e', channels: ['a:b'], data: '{}' });
  res = await post(signed('POST', path, badName), badName);
  if (res.status !== 400 || !/invalid channel name/.test(await res.text())) {
    fail(`bad name: ${res.status}`);
  }
  ok('an invalid channel name is refused with 400');
  await expect('user_count on a non-presence prefix is refused with 400', 400,
    server.get({ path: '/channels', params: { info: 'user_count' } }));
}

async function redis(hostA, portA, hostB, portB) {
  const onB = client(hostB, portB, { presence: { user_id: 'b', user_info: {} } });
  const onA = client(hostA, portA, { presence: { user_id: 'a', user_info: {} } });
  const lobby = await subscribed(onB, 'lobby');
  const got = next(lobby, 'cross');
  await sdk(hostA, portA).trigger('lobby', 'cross', { from: 'A' });
  if ((await got).data.from !== 'A') fail('cross data');
  ok('with Redis: an event triggered on instance A reaches pusher-js on instance B');
  const roomB = await subscribed(onB, 'presence-r');
  const added = next(roomB, 'pusher:member_added');
  const roomA = await subscribed(onA, 'presence-r');
  if ((await added).data.id !== 'a') fail('member_added across instances');
  if (roomA.members.count !== 2) fail(`members on A: ${roomA.members.count}`);
  ok('with Redis: presence members across instances');
  onA.disconnect();
  onB.disconnect();
}

async function users(host, port) {
  const server = sdk(host, port);
  const signedIn = (user, sign) => client(host, port, {
    userAuthentication: {
      customHandler: ({ socketId }, callback) => callback(null, sign
        ? sign(socketId)
        : server.authenticateUser(socketId, { id: user, user_info: { name: user } })),
    },
  });
  const a = signedIn('u1');
  const b = signedIn('u1');
  const other = signedIn('u2');
  for (const p of [a, b, other]) p.signin();
  await within('signin', Promise.all([a, b, other].map(async (p) => {
    await connected(p);
    await p.user.signinDonePromise;
  })));
  if (a.user.user_data.id !== 'u1') fail(`user_data ${JSON.stringify(a.user.user_data)}`);
  ok('pusher:signin with the SDK authenticateUser: signin_success');

  // pusher-js subscribes to #server-to-user-ID on its own once signed in.
  await within('the user channel', new Promise((resolve) => {
    const check = () => (a.user.serverToUserChannel?.subscribed ? resolve() : setTimeout(check, 20));
    check();
  }));
  const got = within('the message to u1', new Promise((resolve) => a.user.bind('notice', resolve)));
  await server.sendToUser('u1', 'notice', { text: 'for u1' });
  if ((await got).text !== 'for u1') fail('sendToUser data');
  ok('sendToUser: a server-to-user message reaches the signed-in user');

  // pusher-js will not subscribe to such a name itself: sent raw.
  const stranger = client(host, port);
  await connected(stranger);
  const refused = within('the refusal', new Promise((resolve) => {
    stranger.connection.bind('message', (m) => {
      if (m.event === 'pusher:subscription_error') resolve(m.data);
    });
  }));
  stranger.send_event('pusher:subscribe', { channel: '#server-to-user-u1' });
  const refusal = await refused;
  if (refusal.status !== 401) fail(`someone else's user channel: ${JSON.stringify(refusal)}`);
  ok("a connection that did not sign in as the user cannot subscribe to the user's channel");

  const forged = signedIn('u3', () => ({ auth: `${APP.key}:${'0'.repeat(64)}`, user_data: '{"id":"u3"}' }));
  forged.signin();
  const closed = within('the 4009 close', new Promise((resolve) => {
    forged.connection.bind('error', (e) => {
      const c = e?.error?.data?.code ?? e?.data?.code;
      if (c) resolve(c);
    });
  }));
  if ((await closed) !== 4009) fail('forged signin');
  ok('a forged signin is refused with 4009');
  forged.disconnect();

  const gone = (p) => within('the terminated connection', new Promise((resolve) => {
    p.connection.bind('state_change', ({ current }) => {
      if (current !== 'connected') resolve(current);
    });
  }));
  const goneA = gone(a);
  const goneB = gone(b);
  await server.terminateUserConnections('u1');
  await Promise.all([goneA, goneB]);
  if (other.connection.state !== 'connected') fail('u2 was terminated too');
  ok("terminate_connections closes every connection of the user, and no one else's");
  for (const p of [a, b, other, stranger]) p.disconnect();
}

async function webhooks(host, port, hookPort) {
  const server = sdk(host, port);
  const events = [];
  let requests = 0;
  let waiters = [];
  const receiver = http.createServer((req, res) => {
    let body = '';
    req.on('data', (c) => { body += c; });
    req.on('end', () => {
      requests += 1;
      // The first POST fails: wsd must retry it.
      if (requests === 1) {
        res.writeHead(500).end();
        return;
      }
      const hook = server.webhook({ headers: req.headers, rawBody: body });
      if (!hook.isValid()) {
        console.error(`not ok - an invalid webhook signature: ${JSON.stringify(req.headers)}`);
        process.exit(1);
      }
      events.push(...hook.getEvents());
      res.writeHead(200).end('{}');
      waiters = waiters.filter((w) => !w());
    });
  });
  await new Promise((resolve) => receiver.listen(Number(hookPort), '127.0.0.1', resolve));
  const seen = (what, test) => within(what, new Promise((resolve) => {
    const check = () => {
      const e = events.find(test);
      if (e) resolve(e);
      return !!e;
    };
    if (!check()) waiters.push(check);
  }), 20000);

  const a = client(host, port, { presence: { user_id: 'alice', user_info: {} } });
  const b = client(host, port, { presence: { user_id: 'bob', user_info: {} } });
  await subscribed(a, 'lobby');
  await seen('channel_occupied', (e) => e.name === 'channel_occupied' && e.channel === 'lobby');
  ok('channel_occupied, POSTed again after the receiver failed once, signed (the SDK verifies it)');
  const roomA = await subscribed(a, 'presence-room');
  await seen('member_added', (e) => e.name === 'member_added' && e.user_id === 'alice');
  await subscribed(b, 'presence-room');
  await seen('member_added bob', (e) => e.name === 'member_added' && e.user_id === 'bob');
  ok('member_added for each user joining a presence channel');
  roomA.trigger('client-ping', { n: 1 });
  const ce = await seen('client_event', (e) => e.name === 'client_event');
  if (ce.event !== 'client-ping' || ce.user_id !== 'alice' || JSON.parse(ce.data).n !== 1) {
    fail(`client_event ${JSON.stringify(ce)}`);
  }
  if (ce.socket_id !== a.connection.socket_id) fail('client_event socket_id');
  ok('client_event with its channel, event, data, socket_id and user_id');
  a.disconnect();
  await seen('member_removed', (e) => e.name === 'member_removed' && e.user_id === 'alice');
  await seen('channel_vacated', (e) => e.name === 'channel_vacated' && e.channel === 'lobby');
  ok('member_removed and channel_vacated when the last connection leaves');
  if (events.some((e) => e.name === 'channel_vacated' && e.channel === 'presence-room')) {
    fail('presence-room vacated while bob is in it');
  }
  b.disconnect();
  await seen('presence-room vacated', (e) => e.name === 'channel_vacated' && e.channel === 'presence-room');
  receiver.close();
}

main({ basics, presence, signatures, redis, users, webhooks });
