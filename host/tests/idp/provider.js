// Portcullis test identity provider: a real oidc-provider 9.x on 127.0.0.1.
//
// Test-only. Prints exactly one line to stdout once it accepts requests:
//   idp listening on http://127.0.0.1:<port>
// Everything else (oidc-provider notices/warnings, errors) goes to stderr.
// See README.md for the environment variables and the HTTP flow.

import { generateKeyPairSync, randomBytes } from 'node:crypto';
import * as http from 'node:http';

// oidc-provider writes NOTICE lines with console.info (stdout). The harness
// reads stdout for the single "listening" line, so route every console
// method except console.error/warn to stderr *before* loading the library.
console.log = (...args) => console.error(...args);
console.info = (...args) => console.error(...args);
console.debug = (...args) => console.error(...args);

const { default: Provider } = await import('oidc-provider');

function fail(message) {
  process.stderr.write(`idp: ${message}\n`);
  process.exit(2);
}

function envInt(name, fallback) {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  if (!/^\d+$/.test(raw)) fail(`${name} must be a non-negative integer, got ${JSON.stringify(raw)}`);
  return Number(raw);
}

function envBool(name, fallback) {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  return ['1', 'true', 'yes', 'on'].includes(raw.toLowerCase());
}

const PORT = envInt('IDP_PORT', 0);
const ACCESS_TOKEN_TTL = envInt('IDP_ACCESS_TOKEN_TTL', 3600);
const ID_TOKEN_TTL = envInt('IDP_ID_TOKEN_TTL', 3600);
const REFRESH_TOKEN_TTL = envInt('IDP_REFRESH_TOKEN_TTL', 14 * 24 * 3600);
const ROTATE_REFRESH_TOKENS = envBool('IDP_ROTATE_REFRESH_TOKENS', false);
const AUTO_PROMPT_CONSENT = envBool('IDP_AUTO_PROMPT_CONSENT', false);
// Milliseconds a refresh-token grant is held before it is answered (tests of single-flight
// refresh: concurrent requests must overlap the refresh to show they share it).
const REFRESH_DELAY_MS = Number(process.env.IDP_REFRESH_DELAY_MS || 0);

let clients;
try {
  clients = JSON.parse(process.env.IDP_CLIENTS || '[]');
} catch (err) {
  fail(`IDP_CLIENTS is not valid JSON: ${err.message}`);
}
if (!Array.isArray(clients)) fail('IDP_CLIENTS must be a JSON array of client metadata objects');

// ---------------------------------------------------------------------------
// Demo accounts. Any other login name is accepted too (devInteractions accept
// any login/password): sub = name, preferred_username = name, groups = [].
const ACCOUNTS = {
  alice: {
    sub: 'alice',
    preferred_username: 'alice',
    name: 'Alice',
    locale: 'en-GB',
    email: 'alice@example.com',
    email_verified: true,
    groups: ['admins', 'staff'],
  },
  bob: {
    sub: 'bob',
    preferred_username: 'bob',
    locale: 'de-DE',
    groups: ['staff'],
  },
  carol: {
    sub: 'carol',
    preferred_username: 'carol',
    groups: [],
  },
};

function claimsFor(id) {
  return ACCOUNTS[id] ?? { sub: id, preferred_username: id, groups: [] };
}

// ---------------------------------------------------------------------------
// Keys: one RS256 signing key generated per process start.
const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const signingJwk = {
  ...privateKey.export({ format: 'jwk' }),
  kid: `test-idp-${randomBytes(6).toString('hex')}`,
  alg: 'RS256',
  use: 'sig',
};

// ---------------------------------------------------------------------------
// Test counters for GET /test/stats.
const stats = { token_requests: 0, refresh_requests: 0 };
// Every token the token endpoint issued, for GET /test/tokens (tests that look for them where
// they must not be, such as the relying party's session files).
const issued = [];

// The issuer needs the real port, so listen first and attach the provider
// afterwards; nothing is announced on stdout until the provider is attached.
let handler = (_req, res) => {
  res.statusCode = 503;
  res.end('starting\n');
};
const server = http.createServer((req, res) => handler(req, res));

await new Promise((resolve, reject) => {
  server.once('error', reject);
  server.listen(PORT, '127.0.0.1', resolve);
});
const { port } = server.address();
const issuer = `http://127.0.0.1:${port}`;

const configuration = {
  clients,
  jwks: { keys: [signingJwk] },
  cookies: {
    // Signed cookies; a fresh random key per process. Cookies are not marked
    // Secure because the request is plain http (oidc-provider only sets
    // Secure when ctx.secure is true); SameSite=Lax, HttpOnly (defaults).
    keys: [randomBytes(32).toString('hex')],
  },
  findAccount(_ctx, id) {
    return {
      accountId: id,
      async claims(_use, _scope, _claims, _rejected) {
        // Return everything; oidc-provider filters by granted scopes/claims.
        return { ...claimsFor(id) };
      },
    };
  },
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['preferred_username', 'name', 'locale'],
    groups: ['groups'],
  },
  scopes: ['openid', 'offline_access', 'email', 'profile', 'groups'],
  // Put the scope-derived claims into the ID token itself, not only into
  // the userinfo response.
  conformIdTokenClaims: false,
  pkce: {
    // PKCE (S256 only, the v9 default method) is required for every client,
    // confidential ones included.
    required: () => true,
  },
  features: {
    devInteractions: { enabled: true },
    rpInitiatedLogout: { enabled: true },
    revocation: { enabled: true },
    userinfo: { enabled: true },
  },
  issueRefreshToken(_ctx, client, code) {
    return client.grantTypeAllowed('refresh_token') && code.scopes.has('offline_access');
  },
  rotateRefreshToken() {
    return ROTATE_REFRESH_TOKENS;
  },
  ttl: {
    AccessToken: ACCESS_TOKEN_TTL,
    IdToken: ID_TOKEN_TTL,
    RefreshToken: REFRESH_TOKEN_TTL,
  },
  renderError(ctx, out, _error) {
    ctx.type = 'json';
    ctx.body = out;
  },
};

let provider;
try {
  provider = new Provider(issuer, configuration);
} catch (err) {
  server.close();
  fail(`invalid configuration: ${err.stack || err}`);
}

// Static clients are only validated on first use; validate them now so a bad
// IDP_CLIENTS fails fast (exit 2) instead of after "listening" was printed.
for (const metadata of clients) {
  let client;
  try {
    client = await provider.Client.find(String(metadata?.client_id));
  } catch (err) {
    server.close();
    fail(`invalid client in IDP_CLIENTS (${metadata?.client_id}): ${err.message}${err.error_description ? ` - ${err.error_description}` : ''}`);
  }
  if (!client) {
    server.close();
    fail(`client ${JSON.stringify(metadata?.client_id)} from IDP_CLIENTS not found`);
  }
}

provider.use(async (ctx, next) => {
  if (ctx.path === '/test/tokens' && ctx.method === 'GET') {
    ctx.type = 'json';
    ctx.body = issued;
    return;
  }
  if (ctx.path === '/test/stats') {
    if (ctx.method === 'GET') {
      ctx.type = 'json';
      ctx.body = { ...stats };
      return;
    }
    if (ctx.method === 'DELETE') {
      stats.token_requests = 0;
      stats.refresh_requests = 0;
      ctx.status = 204;
      return;
    }
  }
  // Stock oidc-provider 9 silently drops the offline_access scope (so no
  // refresh token is issued) unless the authorization request carries
  // prompt=consent. Relying parties commonly send offline_access without any
  // prompt, so when IDP_AUTO_PROMPT_CONSENT is on (default) an authorization
  // request with offline_access in scope and *no* prompt parameter is treated
  // as if it had prompt=consent. Requests that do send prompt are untouched.
  if (AUTO_PROMPT_CONSENT && ctx.method === 'GET' && ctx.path === '/auth') {
    const { query } = ctx;
    if (
      typeof query.scope === 'string'
      && query.scope.split(' ').includes('offline_access')
      && query.prompt === undefined
    ) {
      ctx.query = { ...query, prompt: 'consent' };
    }
  }

  const isTokenPost = ctx.method === 'POST' && ctx.path === '/token';
  if (isTokenPost) stats.token_requests += 1;
  try {
    await next();
  } finally {
    if (isTokenPost && ctx.status === 200 && ctx.body && typeof ctx.body === 'object') {
      const { access_token, refresh_token, id_token } = ctx.body;
      issued.push({ access_token, refresh_token, id_token });
    }
    if (isTokenPost) {
      const grantType = ctx.oidc?.params?.grant_type ?? ctx.oidc?.body?.grant_type;
      if (grantType === 'refresh_token') {
        stats.refresh_requests += 1;
        if (REFRESH_DELAY_MS > 0) await new Promise((done) => { setTimeout(done, REFRESH_DELAY_MS); });
      }
    }
  }
});

provider.on('server_error', (_ctx, err) => {
  process.stderr.write(`idp server_error: ${err.stack || err}\n`);
});

handler = provider.callback();

let stopping = false;
function shutdown(signal) {
  if (stopping) return;
  stopping = true;
  process.stderr.write(`idp: ${signal}, shutting down\n`);
  server.close(() => process.exit(0));
  server.closeAllConnections();
  setTimeout(() => process.exit(0), 2000).unref();
}
process.on('SIGTERM', () => shutdown('SIGTERM'));
process.on('SIGINT', () => shutdown('SIGINT'));

process.stdout.write(`idp listening on ${issuer}\n`);
