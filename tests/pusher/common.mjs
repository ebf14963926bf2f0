// Helpers shared by the Pusher test scripts: the apps tests/pusher.rs
// configures, clients built the way an app would build them, and waits
// with a bound.
import Pusher from 'pusher-js';
import PusherServer from 'pusher';

export const APP = { appId: '1001', key: 'wsd-test-key', secret: 'wsd-test-secret-0123456789' };
// The second app has client events off.
export const QUIET = { appId: '1002', key: 'wsd-quiet-key', secret: 'wsd-quiet-secret-0123456789' };

/// Longer than any wait should take on a loaded machine.
export const BOUND = 10000;

export function ok(what) {
  console.log(`ok - ${what}`);
}

export function fail(what) {
  throw new Error(what);
}

/// Resolves with `promise`, or rejects naming `what` after BOUND ms.
export function within(what, promise, ms = BOUND) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/// The official server SDK for `app` against wsd at host:port.
export function sdk(host, port, app = APP) {
  return new PusherServer({
    appId: app.appId,
    key: app.key,
    secret: app.secret,
    host,
    port: String(port),
    useTLS: false,
  });
}

/// pusher-js as an app configures it for a self-hosted server, with the
/// server SDK's `authorizeChannel` as its auth endpoint.
export function client(host, port, { app = APP, presence, authorizer, ...options } = {}) {
  const server = sdk(host, port, app);
  return new Pusher(app.key, {
    wsHost: host,
    wsPort: Number(port),
    forceTLS: false,
    enabledTransports: ['ws'],
    disableStats: true,
    cluster: 'mt1',
    channelAuthorization: {
      customHandler: ({ socketId, channelName }, callback) => {
        if (authorizer) return authorizer({ socketId, channelName }, callback);
        const member = channelName.startsWith('presence-') ? presence : undefined;
        callback(null, server.authorizeChannel(socketId, channelName, member));
      },
    },
    ...options,
  });
}

/// Resolves once `pusher` is connected.
export function connected(pusher) {
  return within('the connection', new Promise((resolve, reject) => {
    if (pusher.connection.state === 'connected') return resolve();
    pusher.connection.bind('connected', () => resolve());
    pusher.connection.bind('failed', () => reject(new Error('connection failed')));
  }));
}

/// Subscribes and resolves with the channel once the server confirmed.
export function subscribed(pusher, name) {
  const channel = pusher.subscribe(name);
  return within(`subscription_succeeded on ${name}`, new Promise((resolve, reject) => {
    channel.bind('pusher:subscription_succeeded', () => resolve(channel));
    channel.bind('pusher:subscription_error', (e) => reject(new Error(`${name}: ${JSON.stringify(e)}`)));
  }));
}

/// Resolves with the data of the next `event` on `channel`.
export function next(channel, event) {
  return within(`${event} on ${channel.name}`, new Promise((resolve) => {
    const handler = (data, meta) => {
      channel.unbind(event, handler);
      resolve({ data, meta });
    };
    channel.bind(event, handler);
  }));
}

/// Resolves with the next connection-level `pusher:error`.
export function nextError(pusher) {
  return within('a pusher:error', new Promise((resolve) => {
    const handler = (e) => {
      if (e && e.type === 'PusherError') {
        pusher.connection.unbind('error', handler);
        resolve(e.data);
      }
    };
    pusher.connection.bind('error', handler);
  }));
}

/// Runs the named checks of `suites[argv[2]]`, then exits: 0 when all
/// passed, 1 with the failure on stderr.
export async function main(suites) {
  const [, , name, ...args] = process.argv;
  const suite = suites[name];
  if (!suite) {
    console.error(`unknown suite ${name}; have ${Object.keys(suites).join(', ')}`);
    process.exit(2);
  }
  try {
    await suite(...args);
    process.exit(0);
  } catch (e) {
    console.error(`not ok - ${e.stack || e}`);
    process.exit(1);
  }
}
