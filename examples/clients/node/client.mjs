// The smallest complete Node.js client of an mcc-protected API: it loads
// the app's PKCS#12 bundle (`pfx` and `passphrase`, read by OpenSSL 3 in
// Node 17 and later), calls the API over mTLS with the device context
// headers, and shows the block message with its reference when the gateway
// refuses. When an enrollment URL is set it trades the bundle for an
// install certificate (a key made here), uses it, renews it, and falls back
// to the bundle when enrollment is refused. Node's crypto module has no CSR
// builder; csrOf writes the PKCS#10 request by hand, signed by crypto.sign.
//
// Only Node's standard library. Configuration comes from the environment;
// the bundle's password is read from a file, never written in the code.
import {
  X509Certificate, createDecipheriv, createPrivateKey, createPublicKey, generateKeyPairSync, pbkdf2Sync, randomBytes, sign,
} from 'node:crypto';
import { chmodSync, closeSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import { join } from 'node:path';
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
function serverTLS() {
  const opts = { minVersion: 'TLSv1.2' };
  if (process.env.MCC_SERVER_CA) opts.ca = readFileSync(process.env.MCC_SERVER_CA);
  return opts;
}

function tlsOptions() {
  const opts = serverTLS();
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

// request sends one request and reads at most 1 MiB of the answer: it
// may come from any upstream.
function request(url, options, body) {
  return new Promise((resolve, reject) => {
    const req = https.request(url, { ...options, timeout: 30000 }, (res) => {
      const chunks = [];
      let size = 0;
      res.on('data', (c) => {
        size += c.length;
        if (size > 1 << 20) req.destroy(new Error('the answer is over 1 MiB'));
        else chunks.push(c);
      });
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error('timed out')));
    req.on('error', reject);
    req.end(body);
  });
}

function get(url, options) {
  return request(url, { ...options, headers: deviceHeaders() });
}

// --- Enrollment (docs/api.md, Enrollment) ---

// der encodes one DER element: tag, length (short or long form), value.
function der(tag, ...parts) {
  const value = Buffer.concat(parts);
  const n = value.length;
  let len;
  if (n < 0x80) len = Buffer.from([n]);
  else if (n < 0x100) len = Buffer.from([0x81, n]);
  else len = Buffer.from([0x82, n >> 8, n & 0xff]);
  return Buffer.concat([Buffer.from([tag]), len, value]);
}

// csrOf is the base64 of a PKCS#10 request for key: version 0, an empty
// subject, the key, no attributes, signed with ECDSA-SHA256. The server
// takes only the key from it: the identity comes from the certificate the
// request is made with.
function csrOf(key) {
  const spki = createPublicKey(key).export({ type: 'spki', format: 'der' });
  const info = der(0x30, Buffer.from([0x02, 0x01, 0x00]), der(0x30), spki, Buffer.from([0xa0, 0x00]));
  const signature = sign('sha256', info, key); // DER ECDSA-Sig-Value
  const ecdsaWithSHA256 = der(0x30, Buffer.from([0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02]));
  return der(0x30, info, ecdsaWithSHA256, der(0x03, Buffer.from([0x00]), signature)).toString('base64');
}

function newKey() {
  return generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ type: 'pkcs8', format: 'pem' });
}

class Refused extends Error {
  constructor(status, detail, renewFrom) {
    super(`HTTP ${status}: ${detail}`);
    this.status = status;
    this.detail = detail;
    this.renewFrom = renewFrom;
  }
}

// post calls an enrollment route over mTLS with tls (the bundle's options
// or the install certificate's).
async function post(base, set, route, tls, body) {
  const url = `${base.replace(/\/+$/, '')}/v1/fusion-sets/${encodeURIComponent(set)}/${route}`;
  const res = await request(url, { ...tls, method: 'POST', headers: { 'Content-Type': 'application/json' } }, JSON.stringify(body));
  let doc = {};
  try {
    doc = JSON.parse(res.body);
  } catch {
    // a problem without JSON: its status alone
  }
  if (res.status !== 200 && res.status !== 201) {
    throw new Refused(res.status, doc.detail || doc.title || `HTTP ${res.status}`, doc.renewFrom);
  }
  return doc;
}

const STATE_FILE = 'install.json';

// The install state: the key (a real app keeps it in the Android Keystore
// or the Secure Enclave, where it cannot be read out), the key a renewal is
// under way for, and the server's answer. Written whole: a temporary file
// (0600) renamed into place.
function saveState(dir, state) {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  chmodSync(dir, 0o700);
  const tmp = join(dir, `.install-${randomBytes(6).toString('hex')}.json`);
  try {
    // Written through to the disk before the rename: a power loss leaves
    // the old state or the new one, never an empty file.
    const fd = openSync(tmp, 'wx', 0o600);
    try {
      writeFileSync(fd, JSON.stringify(state));
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, join(dir, STATE_FILE));
  } finally {
    rmSync(tmp, { force: true });
  }
}

function loadState(dir) {
  let raw;
  try {
    raw = readFileSync(join(dir, STATE_FILE), 'utf8');
  } catch (e) {
    if (e.code === 'ENOENT') return null;
    throw e;
  }
  const state = JSON.parse(raw);
  if (!state || typeof state.key !== 'string' || !state.answer) throw new Error(`the install state in ${dir} is damaged`);
  return state;
}

// installTLS is the TLS options presenting the install certificate of
// answer with key, refused when the certificate is not for that key.
function installTLS(answer, key) {
  const cert = new X509Certificate(answer.certificate);
  const spki = { type: 'spki', format: 'der' };
  if (!cert.publicKey.export(spki).equals(createPublicKey(key).export(spki))) throw new Error("the install certificate is not for this device's key");
  return { ...serverTLS(), cert: answer.certificate, key };
}

async function enroll(base, set, dir, bundleTLS) {
  const key = newKey();
  const answer = await post(base, set, 'enroll', bundleTLS, {
    csr: csrOf(key),
    // A new install id with every new key: the server binds an install id
    // to the key of its live certificate.
    installId: randomBytes(16).toString('hex'),
    device: { deviceID: env('MCC_DEVICE_ID', 'node-example-device'), devicePlatform: 'node' },
  });
  const tls = installTLS(answer, key);
  saveState(dir, { key, answer });
  console.log(`enrolled: install ${answer.installId}, serial ${answer.serial}, valid until ${answer.notAfter}`);
  return tls;
}

// installCertificate is the TLS options to call with: the kept install
// certificate, renewed once its renewAfter has passed, or a new enrollment.
async function installCertificate(base, set, dir, bundleTLS) {
  const state = loadState(dir);
  if (!state) return enroll(base, set, dir, bundleTLS);
  const { answer } = state;
  const current = installTLS(answer, state.key);
  if (Date.now() < Date.parse(answer.renewAfter)) return current;
  // Each renewal brings a new key, made and kept before the request: a
  // retry after a lost answer sends the same key, while a copy of this
  // state renewing on its own makes another key, which the server takes
  // for a clone and revokes the install.
  if (!state.pendingKey) {
    state.pendingKey = newKey();
    saveState(dir, state);
  }
  const stillValid = Date.now() < Date.parse(answer.notAfter);
  let renewed;
  try {
    renewed = await post(base, set, 'renew', current, { csr: csrOf(state.pendingKey) });
  } catch (e) {
    if (e instanceof Refused && e.renewFrom) {
      // Too early by the server's clock: the certificate is still good.
      console.log(`renewal: too early (from ${e.renewFrom}); keeping serial ${answer.serial}`);
      return current;
    }
    if (e instanceof Refused && (e.status === 403 || e.status === 409)) {
      // Revoked, expired, or the install revoked as cloned.
      console.log(`renewal refused (HTTP ${e.status}): ${e.detail}; enrolling again`);
      return enroll(base, set, dir, bundleTLS);
    }
    if (!stillValid) throw e;
    console.log(`renewal failed (${e.message}); keeping serial ${answer.serial}`);
    return current;
  }
  const tls = installTLS(renewed, state.pendingKey);
  saveState(dir, { key: state.pendingKey, answer: renewed });
  console.log(`renewed: serial ${renewed.serial}, renew after ${renewed.renewAfter}`);
  return tls;
}

async function main() {
  const url = env('MCC_URL');
  // Loading the bundle here, not at the first request, makes a wrong
  // password or an unreadable format an error at start (createSecureContext
  // parses the PKCS#12 at once).
  let options = tlsOptions();
  const enrollURL = process.env.MCC_ENROLL_URL;
  if (enrollURL && options.pfx) {
    try {
      options = await installCertificate(enrollURL, env('MCC_FUSION_SET'), env('MCC_STATE_DIR'), options);
    } catch (e) {
      if (!(e instanceof Refused)) throw e;
      // The server said no (a revoked build, a limit): the app keeps
      // working with the bundle, and the gateway decides.
      console.log(`enrollment refused (HTTP ${e.status}): ${e.detail}; using the bundle`);
    }
  }
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
