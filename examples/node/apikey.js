'use strict';
// apikey.js: Express middleware that authenticates a request with the apikey
// PostgreSQL extension: one apikey_verify() call per request, its result code
// mapped to an HTTP status, the headers RFC 6750 and rate-limited clients
// expect, and a JSON body for every refusal.
//
//   const { authenticate, createPool } = require('./apikey');
//   const pool = createPool();                     // PGHOST, PGPORT, PGUSER, ...
//   app.get('/documents', authenticate('documents:read', { pool }), handler);
//
// On success req.apiKey = { keyId, orgId, name, scopes, environment,
// expiresAt, metadata, rateLimit, rateRemaining, rateReset }.

const net = require('node:net');
const { Pool } = require('pg');

// The columns are named instead of `SELECT *`: the statement is prepared once
// per connection, and PostgreSQL refuses to run a prepared statement whose
// result columns have changed ("cached plan must not change result type").
// A later version of the extension adds columns to the result; named columns
// keep the prepared statement valid across ALTER EXTENSION UPDATE.
const VERIFY_SQL =
  'SELECT valid, code, key_id, org_id, name, scopes, environment, expires_at,' +
  ' rate_limit, rate_remaining, rate_reset, metadata' +
  ' FROM apikey_verify($1::text, $2::text[], $3::inet)';

// The syntax the extension accepts (resource:action, either side may be *).
// Checked when the middleware is built, so that a typo in a route fails at
// start-up rather than as a 500 on every request to that route.
const SCOPE_RE = /^(\*|[a-z0-9_.-]+)(:(\*|[a-z0-9_.-]+))?$/;

// 401: the credentials themselves are bad (RFC 6750 error="invalid_token").
const INVALID_TOKEN = {
  MALFORMED: 'The API key is malformed',
  NOT_FOUND: 'The API key is unknown',
  REVOKED: 'The API key has been revoked',
  EXPIRED: 'The API key has expired',
};

function normalizeScopes(required) {
  // A single string is one scope, not a list of characters.
  let scopes;
  if (required == null) scopes = [];
  else if (typeof required === 'string') scopes = [required];
  else if (typeof required[Symbol.iterator] === 'function') scopes = Array.from(required);
  else throw new TypeError('required scopes must be a string or an array of strings');
  for (const s of scopes) {
    if (typeof s !== 'string' || !SCOPE_RE.test(s)) {
      throw new TypeError(`invalid required scope ${JSON.stringify(s)} (expected resource:action)`);
    }
  }
  return scopes;
}

// The client address as PostgreSQL's inet accepts it, or null. With
// `trust proxy`, req.ip comes from X-Forwarded-For and can be any string
// ("unknown", "1.2.3.4:5678", "[::1]"); passed through, PostgreSQL raises
// `invalid input syntax for type inet` and the request would fail. null is
// what the extension expects for "address unknown": keys without an
// allowlist still work, keys with one are refused (FORBIDDEN), which is the
// safe outcome. ::ffff:a.b.c.d (an IPv4 client on a dual-stack socket) is
// passed as it is: the extension treats it as a.b.c.d.
function clientAddress(raw) {
  if (typeof raw !== 'string') return null;
  let addr = raw.trim();
  const zone = addr.indexOf('%'); // fe80::1%eth0: inet has no zone index
  if (zone !== -1) addr = addr.slice(0, zone);
  return net.isIP(addr) ? addr : null;
}

function toDate(v) {
  return v == null ? null : v instanceof Date ? v : new Date(v);
}

// X-RateLimit-* on every response for which apikey_verify reported a window
// (VALID and RATE_LIMITED of a key that has a limit; unlimited keys have
// rate_limit 0 and no window, so no headers). Reset is in epoch seconds,
// rounded up so that a client never retries before the window has turned.
function setRateLimitHeaders(res, v) {
  const reset = toDate(v.rate_reset);
  if (!(v.rate_limit > 0) || v.rate_remaining == null || reset == null) return;
  res.set('X-RateLimit-Limit', String(v.rate_limit));
  res.set('X-RateLimit-Remaining', String(v.rate_remaining));
  res.set('X-RateLimit-Reset', String(Math.ceil(reset.getTime() / 1000)));
}

function refuse(res, status, code, message, wwwAuthenticate) {
  if (wwwAuthenticate) res.set('WWW-Authenticate', wwwAuthenticate);
  res.status(status).json({ error: message, code });
}

// "The database cannot answer now": an error from node-postgres itself, not
// from the server (connection refused or lost, pool timeout: they carry no
// severity), or a server error of SQLSTATE class 08 (connection exception),
// 53 (insufficient resources) or 57 (operator intervention: shutdown,
// statement_timeout). Anything else is a bug: 500.
function isUnavailable(err) {
  if (err.severity === undefined) return true;
  return /^(08|53|57)/.test(String(err.code));
}

// Never let the token reach a log line, even if some error message quoted it.
function redact(text, header) {
  let out = String(text);
  if (header) {
    const bare = header.trim().replace(/^bearer\s+/i, '');
    for (const secret of [header, bare]) {
      if (secret.length >= 8) out = out.split(secret).join('[REDACTED]');
    }
  }
  return out;
}

let sharedPool = null;

// A pg Pool configured for the request path. Connection settings come from
// the standard PG* environment variables unless given in config.
function createPool(config = {}) {
  const pool = new Pool({
    max: 10,
    // Without a limit a request waits forever for a connection while the
    // database is down; with one it gets a 503 after 5 s.
    connectionTimeoutMillis: 5000,
    idleTimeoutMillis: 30000,
    // apikey_verify is an index lookup; anything slower means trouble.
    statement_timeout: 5000,
    // PGAPPNAME, when set, wins: it names this application in pg_stat_activity and logs.
    fallback_application_name: 'apikey-example',
    ...config,
  });
  // An idle connection that the server closes (restart, failover,
  // pg_terminate_backend) is reported as an 'error' event on the pool. With no
  // listener Node treats it as an uncaught exception and the process exits.
  pool.on('error', (err) => {
    console.error(`apikey: idle database connection lost: ${err.code || '-'} ${err.message}`);
  });
  return pool;
}

function authenticate(requiredScopes = [], options = {}) {
  const scopes = normalizeScopes(requiredScopes);
  const realm = options.realm || 'api';
  const statementName = options.statementName || 'apikey_verify';
  const getClientIp = options.clientIp || ((req) => req.ip);
  const logger = options.logger || console;
  const pool = options.pool || sharedPool || (sharedPool = createPool());

  const challenge = `Bearer realm="${realm}"`;
  const invalidToken = (code) =>
    `${challenge}, error="invalid_token", error_description="${INVALID_TOKEN[code]}"`;
  const insufficientScope =
    `${challenge}, error="insufficient_scope"` + (scopes.length ? `, scope="${scopes.join(' ')}"` : '');

  // Every outcome is answered here, also database errors: an async middleware
  // that throws is an unhandled rejection on Express 4 (the process dies) and,
  // on Express 5, goes to the default error handler, which shows the raw
  // error message outside production.
  return async function apikeyAuthenticate(req, res, next) {
    const header = req.get('authorization');
    // RFC 6750 3.1: a request without credentials gets the challenge but no
    // error code. It is answered without asking the database.
    if (header === undefined || header.trim() === '') {
      return refuse(res, 401, 'MISSING_TOKEN', 'An API key is required (Authorization: Bearer <key>)', challenge);
    }

    let ip = null;
    try {
      ip = clientAddress(getClientIp(req));
    } catch {
      ip = null;
    }

    let v;
    try {
      // The header goes to the database as it is: apikey_verify accepts
      // "Bearer <token>" (any case) as well as a bare token, and classifies
      // everything else. `name` makes node-postgres use a named prepared
      // statement: parsed and planned once per connection, then only
      // executed. Without a name every call is parsed and planned again.
      const result = await pool.query({ name: statementName, text: VERIFY_SQL, values: [header, scopes, ip] });
      v = result.rows[0];
    } catch (err) {
      const unavailable = isUnavailable(err);
      // Logged without the Authorization header; the message is redacted in
      // case anything ever quoted it.
      logger.error(
        `apikey: verification failed for ${req.method} ${req.path}: ` +
          `${err.code || '-'} ${redact(err.message, header)}`,
      );
      return unavailable
        ? refuse(res, 503, 'SERVICE_UNAVAILABLE', 'Authentication is temporarily unavailable')
        : refuse(res, 500, 'INTERNAL_ERROR', 'Internal server error');
    }

    if (!v) {
      logger.error(`apikey: apikey_verify returned no row for ${req.method} ${req.path}`);
      return refuse(res, 500, 'INTERNAL_ERROR', 'Internal server error');
    }

    setRateLimitHeaders(res, v);

    if (v.valid === true && v.code === 'VALID') {
      req.apiKey = {
        keyId: v.key_id,
        orgId: v.org_id,
        name: v.name,
        scopes: v.scopes,
        environment: v.environment,
        expiresAt: toDate(v.expires_at),
        metadata: v.metadata,
        rateLimit: v.rate_limit,
        rateRemaining: v.rate_remaining,
        rateReset: toDate(v.rate_reset),
      };
      return next();
    }

    switch (v.code) {
      case 'MALFORMED':
      case 'NOT_FOUND':
      case 'REVOKED':
      case 'EXPIRED':
        return refuse(res, 401, v.code, INVALID_TOKEN[v.code], invalidToken(v.code));
      case 'INSUFFICIENT_SCOPE':
        return refuse(res, 403, v.code, `The API key lacks a required scope: ${scopes.join(', ')}`, insufficientScope);
      case 'FORBIDDEN':
        return refuse(res, 403, v.code, 'The API key may not be used from this address');
      case 'RATE_LIMITED': {
        // Retry-After in whole seconds, at least 1, until the window turns.
        const reset = toDate(v.rate_reset);
        const wait = reset ? Math.ceil((reset.getTime() - Date.now()) / 1000) : 1;
        res.set('Retry-After', String(Math.max(1, wait)));
        return refuse(res, 429, v.code, 'Rate limit exceeded for this API key');
      }
      default:
        // A code this middleware does not know (a newer extension): refuse.
        logger.error(`apikey: unexpected verification code ${JSON.stringify(v.code)} for key ${v.key_id || '-'}`);
        return refuse(res, 403, String(v.code), 'The request was refused');
    }
  };
}

module.exports = { authenticate, createPool, clientAddress, VERIFY_SQL };
