// The smallest complete Node.js client of an mcc-protected API: it loads
// the app's PKCS#12 bundle (`pfx` and `passphrase`, read by OpenSSL 3 in
// Node 17 and later), calls the API over mTLS with the device context
// headers, and shows the block message with its reference when the gateway
// refuses. Node's crypto module cannot write a CSR, so enrollment is left
// to a CSR library (README.md).
//
// Only Node's standard library. Configuration comes from the environment;
// the bundle's password is read from a file, never written in the code.
import { createDecipheriv, pbkdf2Sync } from 'node:crypto';
import { readFileSync } from 'node:fs';
import https from 'node:https';
import process from 'node:process';

const EXIT_ALLOWED = 0;
const EXIT_ERROR = 1;
const EXIT_BLOCKED = 3;

function env(name, def) {
  const v = process.env[name];
  if (v) return v;
  if (def !== undefined) return def;
  throw new Error(`${name} is not set`);
}

// A bundle in an AES-256-GCM envelope (mcc issue --profile android|ios):
// magic, 16-byte salt, 12-byte nonce, then the PKCS#12 file sealed with
// AES-256-GCM under PBKDF2-HMAC-SHA256(password, salt, 10000), the magic as
// additional data, the 16-byte tag last.
const ENVELOPE_MAGIC = Buffer.from('MCCENV01');

function openEnvelope(data, password) {
  const header = ENVELOPE_MAGIC.length + 16 + 12;
  if (data.length < header + 16) throw new Error('the bundle envelope is cut short');
  const salt = data.subarray(ENVELOPE_MAGIC.length, ENVELOPE_MAGIC.length + 16);
  const key = pbkdf2Sync(password, salt, 10000, 32, 'sha256');
  const decipher = createDecipheriv('aes-256-gcm', key, data.subarray(ENVELOPE_MAGIC.length + 16, header));
  decipher.setAAD(ENVELOPE_MAGIC);
  decipher.setAuthTag(data.subarray(data.length - 16));
  try {
    return Buffer.concat([decipher.update(data.subarray(header, data.length - 16)), decipher.final()]);
  } catch {
    throw new Error('the bundle envelope does not open (wrong password or damaged file)');
  }
}

// The TLS options: the server's CA (or the system roots) and the bundle.
// Without a bundle no client certificate is sent, as from a script that is
// not the app.
function tlsOptions() {
  const opts = { minVersion: 'TLSv1.2' };
  if (process.env.MCC_SERVER_CA) opts.ca = readFileSync(process.env.MCC_SERVER_CA);
  if (process.env.MCC_BUNDLE) {
    // The file holds the password only; a trailing newline is not part of it.
    opts.passphrase = readFileSync(env('MCC_BUNDLE_PASSWORD_FILE'), 'utf8').replace(/[\r\n]+$/, '');
    opts.pfx = readFileSync(process.env.MCC_BUNDLE);
    if (opts.pfx.subarray(0, ENVELOPE_MAGIC.length).equals(ENVELOPE_MAGIC)) {
      opts.pfx = openEnvelope(opts.pfx, opts.passphrase);
    }
  }
  return opts;
}

// The device context the fusion set maps into its events (device_headers).
// A real app fills them from the device.
function deviceHeaders() {
  return {
    'X-Device-Id': env('MCC_DEVICE_ID', 'node-example-device'),
    'X-Os-Version': process.version,
    'X-Device-Platform': 'node',
    'X-App-Version': '1.0.0',
    // JSON block answers carry the message and the reference as fields.
    Accept: 'application/json',
  };
}

function get(url, options) {
  return new Promise((resolve, reject) => {
    const req = https.get(url, { ...options, headers: deviceHeaders(), timeout: 30000 }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error('timed out')));
    req.on('error', reject);
  });
}

async function main() {
  const url = env('MCC_URL');
  // Loading the bundle here, not at the first request, makes a wrong
  // password or an unreadable format an error at start (createSecureContext
  // parses the PKCS#12 at once).
  const options = tlsOptions();
  const res = await get(url, options);
  if (res.status === 200) {
    console.log(`allowed: HTTP 200: ${res.body.trim()}`);
    return EXIT_ALLOWED;
  }
  let block = {};
  try {
    block = JSON.parse(res.body);
  } catch {
    // not JSON: handled below
  }
  if (!block || typeof block.message !== 'string' || block.message === '') {
    throw new Error(`the API answered HTTP ${res.status}: ${res.body.slice(0, 200)}`);
  }
  const ref = block.externalID || res.headers['x-mcc-external-id'] || '';
  console.log(`blocked: ${block.message} (reference: ${ref})`);
  return EXIT_BLOCKED;
}

main().then(
  (code) => process.exit(code),
  (err) => {
    console.error(`error: ${err.message}`);
    process.exit(EXIT_ERROR);
  },
);
