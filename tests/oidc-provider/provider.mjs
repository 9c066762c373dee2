// A real OpenID provider (panva/oidc-provider 9, pinned in package-lock.json)
// for tlsward's OIDC tests. Test harness only: never deploy it.
//
// Start: node tests/oidc-provider/provider.mjs '<JSON config>'
//   (or the JSON in the OIDC_PROVIDER_CONFIG environment variable).
// It prints one line `READY https://127.0.0.1:PORT` (the issuer) on stdout
// once it listens; everything else goes to stderr.
//
// Config (JSON, snake_case; every key optional except cert and key):
//   port                 0 picks a free port
//   cert, key            paths to the PEM serving certificate and key
//   trust_ca             path to extra CA PEM trusted for outgoing requests
//                        (back-channel logout POSTs to the proxy)
//   access_token_ttl     seconds, access tokens of both grants (300)
//   access_token_alg     default JWS alg of JWT access tokens (ES256)
//   resources            [{indicator, scope, alg?}]; JWT access tokens,
//                        aud = indicator (default https://api.test with
//                        "inventory.read inventory.write")
//   api_client           {client_id, client_secret}: client_credentials
//   mtls_client          {client_id, client_secret}: client_credentials,
//                        certificate-bound tokens (cnf.x5t#S256)
//   web_client           {client_id, client_secret, redirect_uris,
//                        post_logout_redirect_uris, backchannel_logout_uri,
//                        id_token_alg, default_resource}
//   user                 {sub, email, email_verified, preferred_username,
//                        name, groups, roles} (roles -> realm_access.roles)
//   service_claims       extra claims of client_credentials tokens
//
// Test-only extensions:
//   - token endpoint body parameters `test_alg` (JWS alg of this JWT access
//     token) and `test_claims` (JSON object of extra claims for a
//     client_credentials token); real clients never send them.
//   - the login and consent interactions finish by themselves (the user is
//     `user`), and the logout confirmation page redirects to
//     /__test/logout-confirm, which POSTs the real confirmation form for the
//     browser: a client that follows redirects completes both flows.
//   - POST /__test/rotate?alg=ES256[&retire_old=1]: a new signing key with a
//     new kid, published in the JWKS and used for every new token from now
//     on; retire_old=1 also removes the older keys of that alg.
//   - GET /__test/stats, POST /__test/stats/reset: request counters and
//     back-channel logout deliveries.
//   - POST /__test/sign {payload, alg?, kid?, typ?}: signs any payload with
//     the current key. Only for tokens the grant cannot produce (already
//     expired, not yet valid, wrong iss/aud); everything else comes from the
//     real /token endpoint.
//
// Rotation reaches into oidc-provider's internal keystore (the pinned
// version's lib/helpers/weak_cache.js): the library has no public API to
// change keys while running.

import * as fs from 'node:fs';
import * as https from 'node:https';
import * as tls from 'node:tls';
import { randomBytes } from 'node:crypto';

import Provider, { errors } from 'oidc-provider';
import instance from 'oidc-provider/lib/helpers/weak_cache.js';
import { exportJWK, generateKeyPair, importJWK, SignJWT } from 'jose';

const raw = process.argv[2] ?? process.env.OIDC_PROVIDER_CONFIG;
if (!raw) {
  console.error('usage: node provider.mjs <JSON config> (or OIDC_PROVIDER_CONFIG)');
  process.exit(2);
}
const cfg = JSON.parse(raw);
for (const required of ['cert', 'key']) {
  if (!cfg[required]) {
    console.error(`config: "${required}" is required`);
    process.exit(2);
  }
}

const accessTokenTtl = cfg.access_token_ttl ?? 300;
const defaultAlg = cfg.access_token_alg ?? 'ES256';
const resources = cfg.resources ?? [
  { indicator: 'https://api.test', scope: 'inventory.read inventory.write' },
];
const apiClient = { client_id: 'api-client', client_secret: 'api-secret', ...cfg.api_client };
const mtlsClient = { client_id: 'mtls-client', client_secret: 'mtls-secret', ...cfg.mtls_client };
const webClient = {
  client_id: 'web-client',
  client_secret: 'web-secret',
  redirect_uris: ['https://app.test/callback'],
  post_logout_redirect_uris: ['https://app.test/logged-out'],
  id_token_alg: 'ES256',
  ...cfg.web_client,
};
const user = {
  sub: 'test-user',
  email: 'alice@example.test',
  email_verified: true,
  preferred_username: 'alice',
  name: 'Alice Test',
  groups: ['developers', 'inventory-readers'],
  roles: ['inventory-reader'],
  ...cfg.user,
};
const serviceClaims = cfg.service_claims ?? {};
const allResourceScopes = [...new Set(resources.flatMap((r) => r.scope.split(' ')))].join(' ');

const stats = {
  jwks_requests: 0,
  discovery_requests: 0,
  token_requests: 0,
  backchannel_logout_ok: 0,
  backchannel_logout_failed: 0,
  backchannel_logout_last_error: null,
};

// Signing keys, generated here: nothing private is committed.
const kidCounter = {};
async function newSigningKey(alg) {
  const { privateKey } = await generateKeyPair(alg, { extractable: true });
  kidCounter[alg] = (kidCounter[alg] ?? 0) + 1;
  return { ...(await exportJWK(privateKey)), kid: `${alg.toLowerCase()}-${kidCounter[alg]}`, alg, use: 'sig' };
}
const initialKeys = [await newSigningKey('ES256'), await newSigningKey('RS256')];

// The listening port is needed for the issuer before the provider exists.
const server = https.createServer({
  cert: fs.readFileSync(cfg.cert),
  key: fs.readFileSync(cfg.key),
  // The mTLS feature reads the client certificate; it is not verified.
  requestCert: true,
  rejectUnauthorized: false,
});
await new Promise((resolve, reject) => {
  server.once('error', reject);
  server.listen(cfg.port ?? 0, '127.0.0.1', resolve);
});
const { port } = server.address();
const issuer = `https://127.0.0.1:${port}`;

// Outgoing requests (back-channel logout): trust the given CA and allow
// loopback targets, which oidc-provider's SSRF guard refuses.
let outgoingAgent;
function outgoingFetch(url, options) {
  if (!outgoingAgent) {
    // eslint-disable-next-line no-unused-expressions
    Response; // loads undici, which registers its global dispatcher
    const Agent = (globalThis[Symbol.for('undici.globalDispatcher.2')]
      ?? globalThis[Symbol.for('undici.globalDispatcher.1')])?.constructor;
    const ca = cfg.trust_ca
      ? [...tls.rootCertificates, fs.readFileSync(cfg.trust_ca, 'utf8')]
      : undefined;
    outgoingAgent = new Agent({ connect: ca ? { ca } : {} });
  }
  return globalThis.fetch(url, { ...options, dispatcher: outgoingAgent });
}

function resourceAlg(ctx, resource) {
  return ctx?.oidc?.body?.test_alg ?? resource.alg ?? defaultAlg;
}

const webClientMeta = {
  client_id: webClient.client_id,
  client_secret: webClient.client_secret,
  grant_types: ['authorization_code', 'refresh_token'],
  response_types: ['code'],
  redirect_uris: webClient.redirect_uris,
  post_logout_redirect_uris: webClient.post_logout_redirect_uris,
  token_endpoint_auth_method: 'client_secret_basic',
  id_token_signed_response_alg: webClient.id_token_alg,
  scope: `openid offline_access email profile groups ${allResourceScopes}`,
};
if (webClient.backchannel_logout_uri) {
  webClientMeta.backchannel_logout_uri = webClient.backchannel_logout_uri;
  webClientMeta.backchannel_logout_session_required = true;
}

const provider = new Provider(issuer, {
  jwks: { keys: initialKeys },
  cookies: { keys: [randomBytes(32).toString('base64url')] },
  clients: [
    {
      client_id: apiClient.client_id,
      client_secret: apiClient.client_secret,
      grant_types: ['client_credentials'],
      response_types: [],
      redirect_uris: [],
      token_endpoint_auth_method: 'client_secret_basic',
      scope: allResourceScopes,
    },
    {
      client_id: mtlsClient.client_id,
      client_secret: mtlsClient.client_secret,
      grant_types: ['client_credentials'],
      response_types: [],
      redirect_uris: [],
      token_endpoint_auth_method: 'client_secret_basic',
      scope: allResourceScopes,
      tls_client_certificate_bound_access_tokens: true,
    },
    webClientMeta,
  ],
  scopes: ['openid', 'offline_access', ...allResourceScopes.split(' ')],
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['preferred_username', 'name'],
    groups: ['groups', 'realm_access'],
  },
  // Scope claims go into the ID token too, as many real providers do.
  conformIdTokenClaims: false,
  async findAccount(_ctx, sub) {
    if (sub !== user.sub) return undefined;
    return {
      accountId: sub,
      async claims() {
        return {
          sub,
          email: user.email,
          email_verified: user.email_verified,
          preferred_username: user.preferred_username,
          name: user.name,
          groups: user.groups,
          realm_access: { roles: user.roles },
        };
      },
    };
  },
  async extraTokenClaims(ctx, token) {
    if (token.accountId) {
      return { email: user.email, groups: user.groups, realm_access: { roles: user.roles } };
    }
    const perRequest = ctx?.oidc?.body?.test_claims;
    return { ...serviceClaims, ...(perRequest ? JSON.parse(perRequest) : {}) };
  },
  issueRefreshToken: async (_ctx, client) => client.clientId === webClient.client_id,
  pkce: { required: () => true },
  ttl: {
    AccessToken: accessTokenTtl,
    ClientCredentials: accessTokenTtl,
    AuthorizationCode: 60,
    IdToken: 3600,
    RefreshToken: 24 * 3600,
    Interaction: 600,
    Session: 24 * 3600,
    Grant: 24 * 3600,
  },
  fetch: outgoingFetch,
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    backchannelLogout: { enabled: true },
    rpInitiatedLogout: {
      enabled: true,
      // Test shortcut: instead of asking, send the browser to a page that
      // submits the confirmation form for it.
      async logoutSource(ctx, form) {
        const xsrf = /name="xsrf" value="([^"]+)"/.exec(form)?.[1] ?? '';
        ctx.redirect(`/__test/logout-confirm?xsrf=${encodeURIComponent(xsrf)}`);
      },
    },
    resourceIndicators: {
      enabled: true,
      defaultResource: async (_ctx, client, oneOf) => oneOf
        ?? (client?.clientId === webClient.client_id ? webClient.default_resource : undefined),
      useGrantedResource: async () => true,
      async getResourceServerInfo(ctx, indicator) {
        const resource = resources.find((r) => r.indicator === indicator);
        if (!resource) throw new errors.InvalidTarget();
        return {
          scope: resource.scope,
          audience: indicator,
          accessTokenFormat: 'jwt',
          accessTokenTTL: accessTokenTtl,
          jwt: { sign: { alg: resourceAlg(ctx, resource) } },
        };
      },
    },
    mTLS: {
      enabled: true,
      certificateBoundAccessTokens: true,
      getCertificate(ctx) {
        const peer = ctx.socket.getPeerX509Certificate?.();
        return peer ? peer.toString() : undefined;
      },
    },
  },
});
provider.proxy = false;

for (const event of ['server_error', 'grant.error', 'end_session.error', 'interaction.error', 'jwks.error']) {
  provider.on(event, (_ctx, err) => console.error(`${event}: ${err?.message ?? err}`));
}
provider.on('backchannel.success', () => {
  stats.backchannel_logout_ok += 1;
});
provider.on('backchannel.error', (_ctx, err) => {
  stats.backchannel_logout_failed += 1;
  stats.backchannel_logout_last_error = String(err?.cause?.message ?? err?.message ?? err);
  console.error(`backchannel.error: ${stats.backchannel_logout_last_error}`);
});

async function readJson(req) {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  const text = Buffer.concat(chunks).toString('utf8');
  return text ? JSON.parse(text) : {};
}

async function rotate(alg, retireOld) {
  const { keystore, jwks } = instance(provider);
  const key = await newSigningKey(alg);
  // New key first: selectForSign keeps keystore order among equal matches.
  let rest = [...keystore];
  if (retireOld) rest = rest.filter((k) => k.alg !== alg);
  keystore.clear();
  keystore.add(key);
  for (const k of rest) keystore.add(k);
  const pub = { ...key };
  for (const p of ['d', 'p', 'q', 'dp', 'dq', 'qi']) delete pub[p];
  const published = [pub, ...jwks.keys.filter((k) => !retireOld || k.alg !== alg)];
  jwks.keys.splice(0, jwks.keys.length, ...published);
  return key.kid;
}

function currentKey(alg) {
  const [key] = instance(provider).keystore.selectForSign({ alg, use: 'sig' });
  return key;
}

// Server-side submission of the logout confirmation form with the browser's
// cookies: the real POST /session/end/confirm, answered back to the browser.
function postLogoutConfirm(ctx, xsrf) {
  const body = new URLSearchParams({ xsrf, logout: 'yes' }).toString();
  return new Promise((resolve, reject) => {
    const req = https.request(`${issuer}/session/end/confirm`, {
      method: 'POST',
      rejectUnauthorized: false, // our own listener
      headers: {
        'content-type': 'application/x-www-form-urlencoded',
        'content-length': Buffer.byteLength(body),
        cookie: ctx.get('cookie'),
      },
    }, (res) => {
      res.resume();
      res.on('end', () => resolve(res));
    });
    req.on('error', reject);
    req.end(body);
  });
}

provider.use(async (ctx, next) => {
  const { path, method } = ctx;

  if (path === '/jwks') stats.jwks_requests += 1;
  if (path === '/.well-known/openid-configuration') stats.discovery_requests += 1;
  if (path === '/token') stats.token_requests += 1;

  if (method === 'GET' && path.startsWith('/interaction/')) {
    const details = await provider.interactionDetails(ctx.req, ctx.res);
    const { prompt, params, session } = details;
    let result;
    if (prompt.name === 'login') {
      result = { login: { accountId: user.sub } };
    } else if (prompt.name === 'consent') {
      const grant = details.grantId
        ? await provider.Grant.find(details.grantId)
        : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
      const d = prompt.details;
      if (d.missingOIDCScope) grant.addOIDCScope(d.missingOIDCScope.join(' '));
      if (d.missingOIDCClaims) grant.addOIDCClaims(d.missingOIDCClaims);
      for (const [indicator, scopes] of Object.entries(d.missingResourceScopes ?? {})) {
        grant.addResourceScope(indicator, scopes.join(' '));
      }
      result = { consent: { grantId: await grant.save() } };
    } else {
      throw new Error(`unexpected prompt ${prompt.name}`);
    }
    const returnTo = await provider.interactionResult(ctx.req, ctx.res, result, {
      mergeWithLastSubmission: true,
    });
    ctx.status = 303;
    ctx.redirect(returnTo);
    return;
  }

  if (!path.startsWith('/__test/')) {
    await next();
    return;
  }

  if (method === 'GET' && path === '/__test/logout-confirm') {
    const res = await postLogoutConfirm(ctx, String(ctx.query.xsrf ?? ''));
    ctx.status = res.statusCode;
    if (res.headers.location) ctx.set('location', res.headers.location);
    if (res.headers['set-cookie']) ctx.set('set-cookie', res.headers['set-cookie']);
    ctx.body = '';
    return;
  }
  if (method === 'POST' && path === '/__test/rotate') {
    const alg = String(ctx.query.alg ?? 'ES256');
    if (!['ES256', 'RS256'].includes(alg)) ctx.throw(400, 'alg must be ES256 or RS256');
    const retireOld = ['1', 'true'].includes(String(ctx.query.retire_old ?? ''));
    ctx.body = { kid: await rotate(alg, retireOld) };
    return;
  }
  if (method === 'GET' && path === '/__test/stats') {
    ctx.body = stats;
    return;
  }
  if (method === 'POST' && path === '/__test/stats/reset') {
    for (const k of Object.keys(stats)) stats[k] = k.endsWith('_error') ? null : 0;
    ctx.body = stats;
    return;
  }
  if (method === 'POST' && path === '/__test/sign') {
    const { payload, alg = 'ES256', kid, typ = 'at+jwt' } = await readJson(ctx.req);
    const key = currentKey(alg);
    if (!key) ctx.throw(400, `no ${alg} key`);
    const jwt = await new SignJWT(payload)
      .setProtectedHeader({ alg, kid: kid ?? key.kid, typ })
      .sign(await importJWK(key, alg));
    ctx.body = { token: jwt };
    return;
  }
  ctx.status = 404;
});

server.on('request', provider.callback());
process.stdout.write(`READY ${issuer}\n`);

for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => process.exit(0));
}
