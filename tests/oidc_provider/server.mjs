// A real OpenID provider for the authsvc tests: panva's oidc-provider on a loopback port.
//
//   node server.mjs --port 40123 [--config state.json]
//   (or OIDC_PROVIDER_PORT / OIDC_PROVIDER_CONFIG=<path to JSON>)
//
// The config JSON (every key optional):
//   clients: [{client_id, client_secret, redirect_uris, token_endpoint_auth_method}, ...]
//   accounts: {"<login name>": {sub, email, email_verified, preferred_username, name, roles}}
//   keys: [private RSA JWK, ...]   the first one signs; generated when absent
//   conform_id_token_claims: false  true = scope claims only from userinfo (the spec default)
//   ttl: {AuthorizationCode: 60, IdToken: 3600, ...}
//
// Served: discovery, JWKS, the authorization endpoint with the library's development
// login and consent pages (devInteractions), the token endpoint (client_secret_basic and
// client_secret_post), userinfo; PKCE S256 is required on every authorization request.
//
// Test controls, under /__test__/ (this tool is bound to 127.0.0.1 and answers them only
// to loopback peers; it is never a production component):
//   GET  /__test__/state             clients, accounts, private keys (to restart the same)
//   POST /__test__/clients           {client metadata}: add or replace by client_id
//   POST /__test__/accounts          {login, sub, email, email_verified, ...}: add or replace
//   POST /__test__/keys/rotate       a new RS256 key signs from now on, the old ones stay
//                                    published; {"drop_old": true} also drops them
//   POST /__test__/keys/retire       drop every key but the current signing one
//   POST /__test__/delay             {"seconds": s, "path": "/token"}: hold matching requests
//                                    s seconds before answering (0 = off); a client
//                                    that gives up meanwhile is dropped unanswered
//   POST /__test__/tamper            {"claims": {...}, "header": {...}, "unknown_key": bool,
//                                    "hmac_secret": s}: the next token response's ID token
//                                    is re-signed with those claims and header fields changed
//                                    (null deletes a claim): by the current key, by a key
//                                    published nowhere (unknown_key), unsigned (alg "none")
//                                    or HS256 with hmac_secret
//   POST /__test__/reset             delay and tamper off
import { createHmac, generateKeyPairSync, randomBytes, randomUUID, sign } from 'node:crypto';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import { parseArgs } from 'node:util';

import Provider from 'oidc-provider';

const { values: args } = parseArgs({
  options: { port: { type: 'string' }, config: { type: 'string' } },
});
const port = Number(args.port || process.env.OIDC_PROVIDER_PORT);
if (!Number.isInteger(port) || port <= 0) {
  console.error('usage: node server.mjs --port N [--config FILE]');
  process.exit(2);
}
const configPath = args.config || process.env.OIDC_PROVIDER_CONFIG;
const initial = configPath ? JSON.parse(readFileSync(configPath, 'utf8')) : {};

const HOST = '127.0.0.1';
const issuer = `http://${HOST}:${port}`;

const state = {
  clients: new Map(),
  accounts: new Map(),
  keys: [],
  conformIdTokenClaims: Boolean(initial.conform_id_token_claims),
  // Every ttl set (the library nags about each default it falls back to); a test may
  // shorten one, e.g. {"AuthorizationCode": 2}.
  ttl: {
    AccessToken: 3600,
    AuthorizationCode: 60,
    Grant: 3600,
    IdToken: 3600,
    Interaction: 600,
    RefreshToken: 86400,
    Session: 3600,
    ...initial.ttl,
  },
};
for (const client of initial.clients || []) state.clients.set(client.client_id, normalizeClient(client));
for (const [login, account] of Object.entries(initial.accounts || {})) {
  state.accounts.set(login, normalizeAccount(login, account));
}
state.keys = (initial.keys || []).length ? initial.keys : [newKey()];

// One set for the life of the process: sessions survive the rebuilds below.
const cookieKeys = [randomBytes(32).toString('hex')];
const controls = { delay: null, tamper: null };

function newKey() {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const jwk = privateKey.export({ format: 'jwk' });
  return { ...jwk, kid: randomUUID().replace(/-/g, '').slice(0, 16), alg: 'RS256', use: 'sig' };
}

function normalizeClient(c) {
  if (!c.client_id || !c.client_secret || !Array.isArray(c.redirect_uris)) {
    throw new Error('a client needs client_id, client_secret and redirect_uris');
  }
  return {
    client_id: String(c.client_id),
    client_secret: String(c.client_secret),
    redirect_uris: c.redirect_uris.map(String),
    token_endpoint_auth_method: c.token_endpoint_auth_method || 'client_secret_basic',
    grant_types: c.grant_types || ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    id_token_signed_response_alg: 'RS256',
  };
}

function normalizeAccount(login, a) {
  const account = { sub: String(a.sub ?? login) };
  for (const claim of ['email', 'email_verified', 'preferred_username', 'name', 'roles']) {
    if (a[claim] !== undefined && a[claim] !== null) account[claim] = a[claim];
  }
  return account;
}

function accountFor(login) {
  // devInteractions signs in whatever login name is typed (any password): a name the test
  // did not set up is an account with that name as sub and no email.
  return state.accounts.get(login) || { sub: login, preferred_username: login };
}

function build() {
  const provider = new Provider(issuer, {
    clients: [...state.clients.values()],
    jwks: { keys: state.keys },
    cookies: { keys: cookieKeys },
    findAccount(ctx, id) {
      const account = accountFor(id);
      return { accountId: id, claims: async () => ({ ...account }) };
    },
    claims: {
      openid: ['sub'],
      email: ['email', 'email_verified'],
      profile: ['preferred_username', 'name'],
      roles: ['roles'],
    },
    scopes: ['openid', 'offline_access', 'email', 'profile', 'roles'],
    conformIdTokenClaims: state.conformIdTokenClaims,
    clientAuthMethods: ['client_secret_basic', 'client_secret_post'],
    responseTypes: ['code'],
    pkce: { methods: ['S256'], required: () => true },
    features: { devInteractions: { enabled: true }, userinfo: { enabled: true } },
    ttl: { ...state.ttl },
    enabledJWA: { idTokenSigningAlgValues: ['RS256'] },
  });
  provider.use(tamperMiddleware);
  provider.on('server_error', (ctx, err) => console.error('server_error', err));
  return provider;
}

async function tamperMiddleware(ctx, next) {
  await next();
  const t = controls.tamper;
  if (!t || ctx.oidc?.route !== 'token' || !ctx.body?.id_token) return;
  controls.tamper = null;
  ctx.body = { ...ctx.body, id_token: resign(ctx.body.id_token, t) };
}

const b64 = (obj) => Buffer.from(JSON.stringify(obj)).toString('base64url');

function resign(token, { claims = {}, header = {}, unknown_key: unknownKey = false, hmac_secret: hmacSecret }) {
  const [h, p] = token.split('.');
  const head = { ...JSON.parse(Buffer.from(h, 'base64url')), ...header };
  const payload = JSON.parse(Buffer.from(p, 'base64url'));
  for (const [name, value] of Object.entries(claims)) {
    if (value === null) delete payload[name];
    else payload[name] = value;
  }
  const key = unknownKey ? newKey() : state.keys[0];
  if (unknownKey) head.kid = key.kid;
  const data = `${b64(head)}.${b64(payload)}`;
  if (head.alg === 'none') return `${data}.`;
  if (head.alg === 'HS256') {
    // alg confusion: "signed" with a shared secret (say the client secret, or the public key)
    return `${data}.${createHmac('sha256', hmacSecret ?? '').update(data).digest('base64url')}`;
  }
  return `${data}.${sign('sha256', Buffer.from(data), { key, format: 'jwk' }).toString('base64url')}`;
}

let provider = build();
let handler = provider.callback();

function rebuild() {
  provider = build();
  handler = provider.callback();
}

const publicKids = () => state.keys.map((k) => k.kid);

function snapshot() {
  return {
    issuer,
    kids: publicKids(),
    signing_kid: state.keys[0].kid,
    keys: state.keys,
    clients: [...state.clients.values()],
    accounts: Object.fromEntries(state.accounts),
    conform_id_token_claims: state.conformIdTokenClaims,
    ttl: state.ttl,
  };
}

async function readJson(req) {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  const text = Buffer.concat(chunks).toString('utf8');
  return text ? JSON.parse(text) : {};
}

function send(res, status, body) {
  const data = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(data) });
  res.end(data);
}

const LOOPBACK = new Set(['127.0.0.1', '::1', '::ffff:127.0.0.1']);

async function admin(req, res, path) {
  if (!LOOPBACK.has(req.socket.remoteAddress)) return send(res, 403, { error: 'loopback only' });
  if (req.method === 'GET' && path === '/__test__/state') return send(res, 200, snapshot());
  if (req.method !== 'POST') return send(res, 405, { error: 'POST' });
  const body = await readJson(req);
  switch (path) {
    case '/__test__/clients': {
      const client = normalizeClient(body);
      state.clients.set(client.client_id, client);
      rebuild();
      return send(res, 200, snapshot());
    }
    case '/__test__/accounts': {
      const login = String(body.login ?? body.sub);
      state.accounts.set(login, normalizeAccount(login, body));
      return send(res, 200, snapshot());
    }
    case '/__test__/keys/rotate': {
      const key = newKey();
      state.keys = body.drop_old ? [key] : [key, ...state.keys];
      rebuild();
      return send(res, 200, { kid: key.kid, ...snapshot() });
    }
    case '/__test__/keys/retire':
      state.keys = [state.keys[0]];
      rebuild();
      return send(res, 200, snapshot());
    case '/__test__/delay':
      controls.delay = body.seconds ? { ms: body.seconds * 1000, path: body.path || '/' } : null;
      return send(res, 200, { delay: controls.delay });
    case '/__test__/tamper':
      controls.tamper = body;
      return send(res, 200, { tamper: controls.tamper });
    case '/__test__/reset':
      controls.delay = null;
      controls.tamper = null;
      return send(res, 200, {});
    default:
      return send(res, 404, { error: 'unknown test control' });
  }
}

// oidc-provider lets a client registered for client_secret_basic authenticate with
// client_secret_post and the other way round; providers such as Keycloak hold a client to
// its registered method. So does this one: the body is read here (the library then uses
// req.body) and a client using the other method is refused as the library refuses one.
async function checkAuthMethod(req) {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  req.body = Buffer.concat(chunks).toString('utf8');
  const header = req.headers.authorization || '';
  let clientId;
  if (/^basic /i.test(header)) {
    const pair = Buffer.from(header.slice(6).trim(), 'base64').toString('utf8');
    try {
      clientId = decodeURIComponent(pair.split(':')[0].replace(/\+/g, ' '));
    } catch {
      return undefined; // the library answers malformed headers itself
    }
  } else {
    clientId = new URLSearchParams(req.body).get('client_id');
  }
  const client = state.clients.get(clientId);
  if (!client) return undefined;
  const used = header ? 'client_secret_basic' : 'client_secret_post';
  if (used !== client.token_endpoint_auth_method) {
    return `client authentication failed: registered for ${client.token_endpoint_auth_method}, used ${used}`;
  }
  return undefined;
}

const server = http.createServer(async (req, res) => {
  const path = new URL(req.url, issuer).pathname;
  try {
    if (path.startsWith('/__test__/')) return await admin(req, res, path);
    const delay = controls.delay;
    if (delay && path.startsWith(delay.path)) {
      // A client that gives up while held is dropped: its request never reaches the
      // library (so a held token request consumes no code).
      const gone = await new Promise((resolve) => {
        const timer = setTimeout(() => resolve(false), delay.ms);
        res.on('close', () => { clearTimeout(timer); resolve(true); });
      });
      if (gone) return undefined;
    }
    if (req.method === 'POST' && path === '/token') {
      const refused = await checkAuthMethod(req);
      if (refused) return send(res, 401, { error: 'invalid_client', error_description: refused });
    }
    return handler(req, res);
  } catch (err) {
    console.error(err);
    if (!res.headersSent) send(res, 400, { error: String(err.message || err) });
    return undefined;
  }
});

server.listen(port, HOST, () => {
  console.log(`READY ${issuer}`);
});

// The test run that started this process is gone (killed before its teardown): go too.
const parent = process.ppid;
setInterval(() => { if (process.ppid !== parent) process.exit(0); }, 500).unref();

for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => {
    server.close();
    server.closeAllConnections();
    process.exit(0);
  });
}
