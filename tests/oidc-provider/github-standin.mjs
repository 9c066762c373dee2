// A local stand-in for GitHub's OAuth web flow and the REST endpoints the
// proxy's GitHub login reads. Test harness only: github.com cannot be
// reached from the tests, and this is the one place a stand-in is accepted
// (issue 14). Node standard library only.
//
// Start: node tests/oidc-provider/github-standin.mjs '<JSON config>'
//   (or the JSON in the GITHUB_STANDIN_CONFIG environment variable).
// It prints one line `READY https://127.0.0.1:PORT` on stdout once it
// listens; everything else goes to stderr. That address serves both the web
// endpoints (GitHub's `url`) and the REST API (`apiUrl`).
//
// Config (JSON, snake_case; every key optional except cert and key):
//   port            0 picks a free port
//   cert, key       paths to the PEM serving certificate and key
//   client_id       the OAuth app's client ID ("gh-client")
//   client_secret   its secret ("gh-secret")
//   redirect_uris   registered callback URLs (exact match)
//   user            who every authorization becomes (there is no login form):
//                   {login, id, name, email (null: private), emails:
//                   [{email, primary, verified, visibility}], orgs: [{login,
//                   id, public}], teams: [{slug, name, org}]}
//
// What it does as GitHub documents it:
//   GET  /login/oauth/authorize     client_id and redirect_uri must be
//        registered; PKCE S256 is required here (code_challenge and
//        code_challenge_method=S256). 302 to redirect_uri?code=&state=.
//   POST /login/oauth/access_token  client credentials by HTTP Basic or in
//        the body; the code is single-use and expires after 10 minutes;
//        redirect_uri must match the authorization's; code_verifier must
//        match the challenge. Errors are answered with 200 and an `error`
//        field, as GitHub does. JSON with `Accept: application/json`, else
//        form-encoded. Tokens look like GitHub's (`gho_` + 36 characters).
//   GET  /user, /user/emails, /user/orgs, /user/teams  need
//        `Authorization: Bearer <token>` (or `token <token>`) and a
//        User-Agent; 401 "Bad credentials" otherwise. /user/emails needs the
//        user:email (or user) scope, else 404; without read:org, /user/orgs
//        lists only public memberships and /user/teams answers 403. Lists
//        are paginated (per_page 30 by default, at most 100, `page`) with a
//        `Link` header.
// Test-only:
//   GET  /__test/stats         request counters and refusals by reason
//   POST /__test/stats/reset
//   POST /__test/redirect_uris  replaces the registered callbacks (a JSON
//                              array), for a client whose port is known late
//   GET  /__test/secrets       every code, code_verifier and access token
//                              seen, so a test can look for them in logs

import * as fs from 'node:fs';
import * as https from 'node:https';
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';

const raw = process.argv[2] ?? process.env.GITHUB_STANDIN_CONFIG;
if (!raw) {
  console.error('usage: node github-standin.mjs <JSON config> (or GITHUB_STANDIN_CONFIG)');
  process.exit(2);
}
const cfg = JSON.parse(raw);
for (const required of ['cert', 'key']) {
  if (!cfg[required]) {
    console.error(`config: "${required}" is required`);
    process.exit(2);
  }
}

const clientId = cfg.client_id ?? 'gh-client';
const clientSecret = cfg.client_secret ?? 'gh-secret';
let redirectUris = cfg.redirect_uris ?? [];
const user = {
  login: 'octocat',
  id: 583231,
  name: 'The Octocat',
  email: null,
  emails: [],
  orgs: [],
  teams: [],
  ...cfg.user,
};
const CODE_TTL_MS = 10 * 60 * 1000;

const emptyStats = () => ({
  authorize: 0,
  authorize_refused: 0,
  access_token: 0,
  access_token_issued: 0,
  access_token_refused: {},
  // How clients authenticated at the token endpoint: basic or body.
  client_auth: {},
  user: 0,
  user_emails: 0,
  user_orgs: 0,
  user_teams: 0,
  api_unauthorized: 0,
  last_authorize_query: null,
});
let stats = emptyStats();

// code -> {challenge, redirect_uri, scope, expires, used}
const codes = new Map();
// token -> {scope}
const tokens = new Map();
const verifiers = [];

const b64url = (buf) => buf.toString('base64url');
const sameText = (a, b) => {
  const x = Buffer.from(String(a));
  const y = Buffer.from(String(b));
  return x.length === y.length && timingSafeEqual(x, y);
};

function send(res, status, body, headers = {}) {
  const text = typeof body === 'string' ? body : JSON.stringify(body);
  const type = typeof body === 'string' ? 'text/plain; charset=utf-8' : 'application/json; charset=utf-8';
  res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store', ...headers });
  res.end(text);
}

async function readBody(req) {
  const chunks = [];
  let size = 0;
  for await (const c of req) {
    size += c.length;
    if (size > 64 * 1024) throw new Error('body too large');
    chunks.push(c);
  }
  return Buffer.concat(chunks).toString('utf8');
}

function authorize(url, res) {
  stats.authorize += 1;
  const q = url.searchParams;
  stats.last_authorize_query = Object.fromEntries(q.entries());
  const refuse = (status, why) => {
    stats.authorize_refused += 1;
    send(res, status, `${why}\n`);
  };
  if (q.get('client_id') !== clientId) return refuse(404, 'unknown client_id');
  const redirectUri = q.get('redirect_uri');
  if (!redirectUri || !redirectUris.includes(redirectUri)) {
    return refuse(400, 'The redirect_uri is not associated with this application.');
  }
  const challenge = q.get('code_challenge');
  if (q.get('code_challenge_method') !== 'S256' || !challenge || !/^[A-Za-z0-9_-]{43}$/.test(challenge)) {
    return refuse(400, 'PKCE with code_challenge_method=S256 is required');
  }
  const code = randomBytes(10).toString('hex');
  codes.set(code, {
    challenge,
    redirect_uri: redirectUri,
    scope: (q.get('scope') ?? '').split(/[ ,]+/).filter(Boolean),
    expires: Date.now() + CODE_TTL_MS,
    used: false,
  });
  const back = new URL(redirectUri);
  back.searchParams.set('code', code);
  if (q.has('state')) back.searchParams.set('state', q.get('state'));
  res.writeHead(302, { location: back.toString(), 'cache-control': 'no-store' });
  res.end();
}

async function accessToken(req, res) {
  stats.access_token += 1;
  const form = new URLSearchParams(await readBody(req));
  const json = (req.headers.accept ?? '').includes('application/json');
  const answer = (fields) => {
    if (json) return send(res, 200, fields);
    res.writeHead(200, { 'content-type': 'application/x-www-form-urlencoded; charset=utf-8' });
    res.end(new URLSearchParams(fields).toString());
  };
  // GitHub answers a failed exchange with 200 and an error field.
  const refuse = (error, description) => {
    stats.access_token_refused[error] = (stats.access_token_refused[error] ?? 0) + 1;
    answer({ error, error_description: description, error_uri: 'https://docs.github.com/apps/oauth' });
  };

  let id = form.get('client_id');
  let secret = form.get('client_secret');
  let how = 'body';
  const basic = /^Basic (.+)$/i.exec(req.headers.authorization ?? '');
  if (basic) {
    const plain = Buffer.from(basic[1], 'base64').toString('utf8');
    const at = plain.indexOf(':');
    try {
      id = decodeURIComponent(plain.slice(0, at).replace(/\+/g, ' '));
      secret = decodeURIComponent(plain.slice(at + 1).replace(/\+/g, ' '));
    } catch {
      id = null;
    }
    how = 'basic';
  }
  stats.client_auth[how] = (stats.client_auth[how] ?? 0) + 1;
  if (id !== clientId || !secret || !sameText(secret, clientSecret)) {
    return refuse('incorrect_client_credentials', 'The client_id and/or client_secret passed are incorrect.');
  }
  const code = form.get('code') ?? '';
  const grant = codes.get(code);
  if (!grant || grant.used || grant.expires < Date.now()) {
    return refuse('bad_verification_code', 'The code passed is incorrect or expired.');
  }
  // Single use, whatever happens next.
  grant.used = true;
  const redirectUri = form.get('redirect_uri');
  if (redirectUri !== null && redirectUri !== grant.redirect_uri) {
    return refuse('redirect_uri_mismatch', 'The redirect_uri MUST match the registered callback URL for this application.');
  }
  const verifier = form.get('code_verifier') ?? '';
  if (verifier) verifiers.push(verifier);
  const computed = b64url(createHash('sha256').update(verifier).digest());
  if (!verifier || !sameText(computed, grant.challenge)) {
    return refuse('bad_verification_code', 'The code_verifier does not match the code_challenge.');
  }
  const token = `gho_${randomBytes(27).toString('base64url').slice(0, 36)}`;
  tokens.set(token, { scope: grant.scope });
  stats.access_token_issued += 1;
  answer({ access_token: token, token_type: 'bearer', scope: [...grant.scope].sort().join(',') });
}

function page(url, res, items) {
  const perPage = Math.min(Math.max(Number(url.searchParams.get('per_page') ?? 30) || 30, 1), 100);
  const pageNo = Math.max(Number(url.searchParams.get('page') ?? 1) || 1, 1);
  const last = Math.max(Math.ceil(items.length / perPage), 1);
  const headers = {};
  const link = (n, rel) => {
    const u = new URL(url);
    u.searchParams.set('per_page', String(perPage));
    u.searchParams.set('page', String(n));
    return `<${u}>; rel="${rel}"`;
  };
  const links = [];
  if (pageNo < last) links.push(link(pageNo + 1, 'next'), link(last, 'last'));
  if (pageNo > 1) links.push(link(1, 'first'), link(pageNo - 1, 'prev'));
  if (links.length) headers.link = links.join(', ');
  send(res, 200, items.slice((pageNo - 1) * perPage, pageNo * perPage), headers);
}

function api(url, req, res) {
  if (!req.headers['user-agent']) {
    return send(res, 403, 'Request forbidden by administrative rules. Please make sure your request has a User-Agent header.\n');
  }
  const m = /^(?:Bearer|token) (\S+)$/i.exec(req.headers.authorization ?? '');
  const grant = m && tokens.get(m[1]);
  if (!grant) {
    stats.api_unauthorized += 1;
    return send(res, 401, { message: m ? 'Bad credentials' : 'Requires authentication', documentation_url: 'https://docs.github.com/rest', status: '401' });
  }
  const has = (...scopes) => scopes.some((s) => grant.scope.includes(s));
  const headers = { 'x-oauth-scopes': grant.scope.join(', ') };
  switch (url.pathname) {
    case '/user':
      stats.user += 1;
      return send(res, 200, { login: user.login, id: user.id, node_id: `U_${user.id}`, type: 'User', name: user.name, email: user.email }, headers);
    case '/user/emails':
      stats.user_emails += 1;
      if (!has('user:email', 'user')) return send(res, 404, { message: 'Not Found', documentation_url: 'https://docs.github.com/rest' });
      return page(url, res, user.emails.map((e) => ({ visibility: null, ...e })));
    case '/user/orgs':
      stats.user_orgs += 1;
      return page(url, res, user.orgs
        .filter((o) => has('read:org', 'user') || o.public)
        .map((o) => ({ login: o.login, id: o.id, node_id: `O_${o.id}`, description: null })));
    case '/user/teams':
      stats.user_teams += 1;
      if (!has('read:org', 'user', 'repo')) return send(res, 403, { message: 'Resource not accessible by integration', documentation_url: 'https://docs.github.com/rest' });
      return page(url, res, user.teams.map((t) => {
        const org = user.orgs.find((o) => o.login === t.org) ?? { login: t.org, id: 0 };
        return { slug: t.slug, name: t.name ?? t.slug, organization: { login: org.login, id: org.id } };
      }));
    default:
      return send(res, 404, { message: 'Not Found', documentation_url: 'https://docs.github.com/rest' });
  }
}

const server = https.createServer({ cert: fs.readFileSync(cfg.cert), key: fs.readFileSync(cfg.key) });
server.on('request', async (req, res) => {
  try {
    const url = new URL(req.url, base);
    const { pathname } = url;
    if (req.method === 'GET' && pathname === '/login/oauth/authorize') return authorize(url, res);
    if (req.method === 'POST' && pathname === '/login/oauth/access_token') return await accessToken(req, res);
    if (req.method === 'GET' && (pathname === '/user' || pathname.startsWith('/user/'))) return api(url, req, res);
    if (req.method === 'GET' && pathname === '/__test/stats') return send(res, 200, stats);
    if (req.method === 'POST' && pathname === '/__test/stats/reset') {
      stats = emptyStats();
      return send(res, 200, stats);
    }
    if (req.method === 'POST' && pathname === '/__test/redirect_uris') {
      redirectUris = JSON.parse(await readBody(req));
      return send(res, 200, redirectUris);
    }
    if (req.method === 'GET' && pathname === '/__test/secrets') {
      return send(res, 200, { codes: [...codes.keys()], code_verifiers: verifiers, access_tokens: [...tokens.keys()] });
    }
    send(res, 404, { message: 'Not Found' });
  } catch (e) {
    console.error(e);
    if (!res.headersSent) send(res, 500, 'internal error\n');
  }
});
await new Promise((resolve, reject) => {
  server.once('error', reject);
  server.listen(cfg.port ?? 0, '127.0.0.1', resolve);
});
const base = `https://127.0.0.1:${server.address().port}`;
process.stdout.write(`READY ${base}\n`);

for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => process.exit(0));
}
