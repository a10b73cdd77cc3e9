// A real OAuth 2.0 / OpenID Connect authorization server (oidc-provider) on loopback, so the
// oauth probes are tested against an implementation we did not write, not only against mocks
// shaped after our own reading of the RFCs.
//
// Usage: node server.mjs [port]   (port 0 or none: any free port)
// The issuer has a path (`/oidc`), as multi-tenant servers' issuers do, so discovery must
// insert the well-known segment per RFC 8414 §3.1 (oidc-provider serves its metadata only under
// the mount path, so that location answers 404) and fall back to OpenID Connect discovery.
// `GET /_stats` (outside the issuer) answers what the server saw: requests per endpoint and
// token requests per grant_type, so tests can assert a diagnosis never ran a refresh_token
// grant and how many client checks a burst made.
// Prints one JSON line {"issuer": "..."} on stdout once it accepts connections; everything
// else (oidc-provider's development warnings) goes to stderr. Exits when stdin closes, so a
// test that dies without killing it does not leave it running.

import http from 'node:http';
import Provider from 'oidc-provider';

// Known to providers/tests/oauth.rs.
const CLIENT_ID = 'whyfail-test';
const CLIENT_SECRET = 'whyfail-test-secret-0123456789';
const REDIRECT_URI = 'http://127.0.0.1/callback';

const port = Number(process.argv[2] ?? 0);
const MOUNT = '/oidc';
const server = http.createServer();

server.listen(port, '127.0.0.1', () => {
  const issuer = `http://127.0.0.1:${server.address().port}${MOUNT}`;
  const provider = new Provider(issuer, {
    clients: [
      {
        client_id: CLIENT_ID,
        client_secret: CLIENT_SECRET,
        grant_types: ['client_credentials', 'authorization_code', 'refresh_token'],
        response_types: ['code'],
        redirect_uris: [REDIRECT_URI],
        token_endpoint_auth_method: 'client_secret_basic',
        scope: 'openid offline_access api short',
      },
    ],
    scopes: ['openid', 'offline_access', 'api', 'short'],
    features: {
      introspection: { enabled: true },
      revocation: { enabled: true },
      clientCredentials: { enabled: true },
      // No resource indicator is requested, so client_credentials tokens stay opaque
      // (a JWT access token needs a resource server with accessTokenFormat 'jwt').
      devInteractions: { enabled: false },
    },
    ttl: {
      // Scope `short` gives a token that expires in a second: the test's expired token.
      ClientCredentials: (ctx, token) =>
        (token.scope ?? '').split(' ').includes('short') ? 1 : 600,
      AccessToken: 600,
      AuthorizationCode: 60,
      IdToken: 600,
      RefreshToken: 3600,
      Grant: 3600,
      Session: 3600,
      Interaction: 600,
    },
    cookies: { keys: ['whyfail-test-cookie-key'] },
  });
  // Quiet: a test server's errors are the test's business, reported in HTTP responses.
  provider.on('server_error', (_ctx, err) => console.error('server_error', err));
  const stats = { requests: {}, grants: {} };
  const countGrant = (ctx) => {
    const g = ctx.oidc?.params?.grant_type ?? '(none)';
    stats.grants[g] = (stats.grants[g] ?? 0) + 1;
  };
  provider.on('grant.success', countGrant);
  provider.on('grant.error', countGrant);
  const callback = provider.callback();
  // Mounted the way express' app.use(MOUNT, ...) does it: oidc-provider reads the mount path
  // from originalUrl minus url.
  server.on('request', (req, res) => {
    if (req.url === '/_stats') {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify(stats));
      return;
    }
    if (req.url.startsWith(MOUNT)) {
      const endpoint = req.url.slice(MOUNT.length).split('?')[0] || '/';
      const key = `${req.method} ${endpoint}`;
      stats.requests[key] = (stats.requests[key] ?? 0) + 1;
    }
    if (req.url === MOUNT || req.url.startsWith(`${MOUNT}/`) || req.url.startsWith(`${MOUNT}?`)) {
      req.originalUrl = req.url;
      req.url = req.url.slice(MOUNT.length) || '/';
      callback(req, res);
    } else {
      res.writeHead(404, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ error: 'not_found' }));
    }
  });
  process.stdout.write(`${JSON.stringify({ issuer })}\n`);
});

process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => process.exit(0));
