'use strict';
// server.js: a tiny Express 5 API protected by apikey.
//
//   GET  /health     no key needed
//   GET  /documents  needs documents:read
//   POST /documents  needs documents:create   body: {"title": "..."}
//
// Environment: PORT (default 3000), HOST (default 127.0.0.1), TRUST_PROXY
// (Express "trust proxy" setting, e.g. loopback, 1 or true; unset = ignore
// X-Forwarded-For), and the standard PGHOST, PGPORT, PGDATABASE, PGUSER,
// PGPASSWORD for the database.

const http = require('node:http');
const express = require('express');
const { authenticate, createPool } = require('./apikey');

const pool = createPool();
const app = express();
app.disable('x-powered-by');

// Behind a reverse proxy, req.ip must come from X-Forwarded-For, or every
// client has the proxy's address and IP allowlists mean nothing. Only enable
// it for proxies you run: anyone else can write that header.
const trustProxy = process.env.TRUST_PROXY;
if (trustProxy) {
  app.set(
    'trust proxy',
    trustProxy === 'true' ? true : /^\d+$/.test(trustProxy) ? Number(trustProxy) : trustProxy,
  );
}

// One line per request. No headers and no query string: either may carry
// an API key (clients do put keys in ?api_key=), and logs outlive keys.
app.use((req, res, next) => {
  const start = process.hrtime.bigint();
  res.on('finish', () => {
    const ms = Number(process.hrtime.bigint() - start) / 1e6;
    const key = req.apiKey ? req.apiKey.keyId : '-';
    console.log(`${req.method} ${req.path} ${res.statusCode} key=${key} ${ms.toFixed(1)}ms`);
  });
  next();
});

app.get('/health', (req, res) => {
  res.json({ status: 'ok' });
});

// Demo storage: in memory, per organization.
const documents = [];

app.get('/documents', authenticate('documents:read', { pool }), (req, res) => {
  res.json({
    org_id: req.apiKey.orgId,
    key_id: req.apiKey.keyId,
    documents: documents.filter((d) => d.org_id === req.apiKey.orgId),
  });
});

// The body is parsed only after the key is accepted: nobody without a key
// makes this server parse JSON.
app.post('/documents', authenticate(['documents:create'], { pool }), express.json({ limit: '64kb' }), (req, res) => {
  const title = req.body && req.body.title;
  if (typeof title !== 'string' || title === '') {
    return res.status(400).json({ error: 'title (a non-empty string) is required', code: 'BAD_REQUEST' });
  }
  const doc = { id: documents.length + 1, org_id: req.apiKey.orgId, title, created_by: req.apiKey.keyId };
  documents.push(doc);
  res.status(201).json(doc);
});

app.use((req, res) => {
  res.status(404).json({ error: 'No such route', code: 'ROUTE_NOT_FOUND' });
});

// JSON for every error, and never the error's text for a 500: Express's own
// handler would answer HTML with the message and, outside production, the
// stack.
// eslint-disable-next-line no-unused-vars
app.use((err, req, res, next) => {
  const status = Number.isInteger(err.status) && err.status >= 400 && err.status < 500 ? err.status : 500;
  if (status === 500) console.error(`error: ${req.method} ${req.path}: ${err.stack || err}`);
  if (res.headersSent) return res.end();
  res.status(status).json(
    status === 500
      ? { error: 'Internal server error', code: 'INTERNAL_ERROR' }
      : { error: err.expose ? err.message : 'Bad request', code: 'BAD_REQUEST' },
  );
});

const host = process.env.HOST || '127.0.0.1';
const port = Number(process.env.PORT || 3000);
const server = http.createServer(app);
server.on('error', (err) => {
  console.error(`cannot listen on ${host}:${port}: ${err.message}`);
  process.exit(1);
});
// Requests Node's HTTP parser rejects (bad syntax, oversized headers) get a
// JSON body too, instead of Node's bare "400 Bad Request".
server.on('clientError', (err, socket) => {
  if (err.code === 'ECONNRESET' || !socket.writable) return socket.destroy();
  const [status, phrase, code] =
    err.code === 'HPE_HEADER_OVERFLOW'
      ? [431, 'Request Header Fields Too Large', 'HEADERS_TOO_LARGE']
      : [400, 'Bad Request', 'BAD_REQUEST'];
  const body = JSON.stringify({ error: phrase, code });
  socket.end(
    `HTTP/1.1 ${status} ${phrase}\r\nContent-Type: application/json\r\n` +
      `Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
  );
});
server.listen(port, host, () => {
  console.log(`listening on http://${host.includes(':') ? `[${host}]` : host}:${port}`);
});

function shutdown(signal) {
  console.log(`${signal}: shutting down`);
  server.close(() => pool.end().finally(() => process.exit(0)));
  server.closeIdleConnections();
  setTimeout(() => process.exit(0), 5000).unref();
}
process.on('SIGTERM', () => shutdown('SIGTERM'));
process.on('SIGINT', () => shutdown('SIGINT'));
