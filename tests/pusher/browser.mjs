// pusher-js (its browser build) in a real page in headless Chromium (the
// system's, driven by playwright-core), authorized through the server SDK,
// gets an event the SDK triggers. Usage: browser.mjs HOST PORT CHROMIUM.
import { createRequire } from 'node:module';
import { chromium } from 'playwright-core';
import { APP, BOUND, main, ok, sdk, within } from './common.mjs';

const require = createRequire(import.meta.url);

async function page(host, port, executablePath) {
  const server = sdk(host, port);
  const browser = await chromium.launch({ executablePath, args: ['--no-sandbox'] });
  try {
    const context = await browser.newContext();
    const tab = await context.newPage();
    tab.on('console', (m) => console.error(`page: ${m.text()}`));
    // The page's auth endpoint is the backend: the SDK signs in Node.
    await tab.exposeFunction('authorize', (socketId, channel) =>
      server.authorizeChannel(socketId, channel));
    // A page of the server's own origin: Chromium keeps pages from elsewhere
    // (about:blank included) off loopback addresses.
    await tab.goto(`http://${host}:${port}/healthz`);
    await tab.addScriptTag({ path: require.resolve('pusher-js/dist/web/pusher.min.js') });
    const socketId = await within('the page to connect', tab.evaluate(({ key, host, port }) => {
      window.pusher = new Pusher(key, {
        wsHost: host, wsPort: port, forceTLS: false, enabledTransports: ['ws'],
        disableStats: true, cluster: 'mt1',
        channelAuthorization: {
          customHandler: ({ socketId, channelName }, callback) => {
            window.authorize(socketId, channelName).then((auth) => callback(null, auth));
          },
        },
      });
      return new Promise((resolve) => {
        window.pusher.connection.bind('connected', () => resolve(window.pusher.connection.socket_id));
      });
    }, { key: APP.key, host, port: Number(port) }));
    ok(`pusher-js in Chromium connected (socket_id ${socketId})`);
    await within('the page to subscribe', tab.evaluate(() => new Promise((resolve, reject) => {
      const channel = window.pusher.subscribe('private-page');
      window.got = new Promise((r) => channel.bind('news', r));
      channel.bind('pusher:subscription_succeeded', resolve);
      channel.bind('pusher:subscription_error', (e) => reject(new Error(JSON.stringify(e))));
    })));
    await server.trigger('private-page', 'news', { text: 'hello, page' });
    const data = await within('the event in the page', tab.evaluate(() => window.got), BOUND);
    if (data.text !== 'hello, page') throw new Error(`page got ${JSON.stringify(data)}`);
    ok('pusher-js in Chromium got the SDK\'s event on a private channel');
  } finally {
    await browser.close();
  }
}

main({ page });
