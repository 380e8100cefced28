#!/usr/bin/env python3
"""The smallest complete Python client of an mcc-protected API.

It loads the app's PKCS#12 bundle with `cryptography`, calls the API over
mTLS with the device context headers, shows the block message with its
reference when the gateway refuses, and, when MCC_ENROLL_URL is set, trades
the bundle for an install certificate for a key made here, keeps it in
MCC_STATE_DIR, renews it after its renewAfter, and falls back to the bundle
when the server refuses.

Only the standard library and `cryptography` (Debian: python3-cryptography).
Configuration comes from the environment (README.md); the bundle's password
is read from a file, never written in the code.
"""

import base64
import datetime
import hashlib
import json
import os
import secrets
import ssl
import sys
import tempfile
import urllib.error
import urllib.parse
import urllib.request

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs12

EXIT_ALLOWED, EXIT_ERROR, EXIT_BLOCKED = 0, 1, 3
PLATFORM = "python"


class Refused(Exception):
    """The enrollment server's no: a problem+json answer."""

    def __init__(self, status, detail, renew_from=None):
        super().__init__(f"HTTP {status}: {detail}")
        self.status, self.detail, self.renew_from = status, detail, renew_from


def ssl_context(cert_pem=None, key_pem=None):
    """A TLS context trusting MCC_SERVER_CA (or the system roots), with a
    client certificate when given. Python's ssl module loads a certificate
    and key from files only: they are written to a private temporary
    directory and removed as soon as they are loaded."""
    ctx = ssl.create_default_context(cafile=os.environ.get("MCC_SERVER_CA") or None)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if cert_pem is not None:
        # Even for that moment the key is not on disk in clear: it is
        # encrypted under a one-time password that never leaves memory.
        once = secrets.token_bytes(32)
        key = serialization.load_pem_private_key(key_pem, None)
        sealed = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                   serialization.BestAvailableEncryption(once))
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "client.pem")
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(cert_pem + sealed)
            ctx.load_cert_chain(path, password=once)
    return ctx


def pem_pair(cert, key):
    return (cert.public_bytes(serialization.Encoding.PEM),
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()))


# A bundle in an AES-256-GCM envelope (mcc issue --profile android|ios):
# magic, 16-byte salt, 12-byte nonce, then the PKCS#12 file sealed with
# AES-256-GCM under PBKDF2-HMAC-SHA256(password, salt, 10000), the magic as
# additional data.
ENVELOPE_MAGIC = b"MCCENV01"


def open_envelope(data, password):
    """The PKCS#12 file inside an envelope, in memory."""
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    header = len(ENVELOPE_MAGIC) + 16 + 12
    if len(data) < header + 16:
        raise ValueError("the bundle envelope is cut short")
    salt, nonce = data[len(ENVELOPE_MAGIC):len(ENVELOPE_MAGIC) + 16], data[len(ENVELOPE_MAGIC) + 16:header]
    key = hashlib.pbkdf2_hmac("sha256", password, salt, 10000, 32)
    try:
        return AESGCM(key).decrypt(nonce, data[header:], ENVELOPE_MAGIC)
    except InvalidTag:
        raise ValueError("the bundle envelope does not open (wrong password or damaged file)") from None


def load_bundle(path, password_file):
    """The bundle's leaf and key. Its other certificate is the client CA,
    which the gateway has already: only the leaf is sent."""
    if not password_file:
        raise ValueError("MCC_BUNDLE_PASSWORD_FILE is not set")
    with open(password_file, "rb") as f:
        password = f.read().rstrip(b"\r\n")
    with open(path, "rb") as f:
        data = f.read()
    if data.startswith(ENVELOPE_MAGIC):
        data = open_envelope(data, password)
    key, cert, _ = pkcs12.load_key_and_certificates(data, password)
    if key is None or cert is None:
        raise ValueError(f"{path} holds no key and certificate")
    return pem_pair(cert, key)


def device_headers():
    """The device context the fusion set maps into its events
    (device_headers). A real app fills them from the device."""
    return {
        "X-Device-Id": os.environ.get("MCC_DEVICE_ID", "python-example-device"),
        "X-Os-Version": sys.version.split()[0],
        "X-Device-Platform": PLATFORM,
        "X-App-Version": "1.0.0",
    }


def call(url, ctx):
    """Calls the protected API and shows what the user would see."""
    headers = device_headers()
    # JSON block answers carry the message and the reference as fields.
    headers["Accept"] = "application/json"
    req = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=30) as resp:
            print("allowed: HTTP %d: %s" % (resp.status, resp.read(1 << 20).decode().strip()))
            return EXIT_ALLOWED
    except urllib.error.HTTPError as e:
        body = e.read(1 << 20)
        try:
            block = json.loads(body)
        except ValueError:
            block = {}
        if not isinstance(block, dict) or not block.get("message"):
            raise RuntimeError(f"the API answered HTTP {e.code}: {body[:200]!r}") from None
        ref = block.get("externalID") or e.headers.get("X-Mcc-External-Id", "")
        print(f"blocked: {block['message']} (reference: {ref})")
        return EXIT_BLOCKED


def post(base, fusion_set, route, ctx, body):
    """Calls an enrollment route over mTLS."""
    url = "%s/v1/fusion-sets/%s/%s" % (base.rstrip("/"), urllib.parse.quote(fusion_set, safe=""), route)
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=30) as resp:
            return json.loads(resp.read(1 << 20))
    except urllib.error.HTTPError as e:
        try:
            problem = json.loads(e.read(1 << 20))
        except ValueError:
            problem = {}
        raise Refused(e.code, problem.get("detail") or problem.get("title") or e.reason,
                      problem.get("renewFrom")) from None


def parse_time(s):
    return datetime.datetime.fromisoformat(s.replace("Z", "+00:00"))


STATE_FILE = "install.json"


def pem_key(key):
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def save_state(state_dir, state):
    """Keeps the install state whole: a temporary file (0600) renamed into
    place, so a crash leaves the old state or the new one, never half. A
    real app keeps the key in the Android Keystore or the Secure Enclave,
    where it cannot be read out."""
    os.makedirs(state_dir, mode=0o700, exist_ok=True)
    os.chmod(state_dir, 0o700)
    fd, tmp = tempfile.mkstemp(dir=state_dir, prefix=".install-", suffix=".json")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, os.path.join(state_dir, STATE_FILE))
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def load_state(state_dir):
    try:
        with open(os.path.join(state_dir, STATE_FILE), "rb") as f:
            state = json.load(f)
    except FileNotFoundError:
        return None
    if not isinstance(state, dict) or "key" not in state or "answer" not in state:
        raise ValueError(f"the install state in {state_dir} is damaged")
    return state


def install_pair(answer, key):
    cert = x509.load_pem_x509_certificate(answer["certificate"].encode())
    spki = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    if cert.public_key().public_bytes(*spki) != key.public_key().public_bytes(*spki):
        raise ValueError("the install certificate is not for this device's key")
    return pem_pair(cert, key)


def enroll(base, fusion_set, state_dir, bundle_ctx):
    """Makes a device key, trades the bundle for an install certificate
    for it over mTLS, and keeps both."""
    key = ec.generate_private_key(ec.SECP256R1())
    answer = post(base, fusion_set, "enroll", bundle_ctx, {
        "csr": csr_of(key),
        # A new install id with every new key: the server binds an install
        # id to the key of its live certificate.
        "installId": secrets.token_hex(16),
        "device": {"deviceID": os.environ.get("MCC_DEVICE_ID", "python-example-device"), "devicePlatform": PLATFORM},
    })
    pair = install_pair(answer, key)
    save_state(state_dir, {"key": pem_key(key), "answer": answer})
    print(f"enrolled: install {answer['installId']}, serial {answer['serial']}, valid until {answer['notAfter']}")
    return pair


def csr_of(key):
    # The server takes only the key from the CSR: the identity comes from
    # the build certificate.
    csr = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([])).sign(key, hashes.SHA256())
    return base64.b64encode(csr.public_bytes(serialization.Encoding.DER)).decode()


def install_certificate(base, fusion_set, state_dir, bundle_ctx):
    """The install certificate to call with: the kept one, renewed once its
    renewAfter has passed, or a new enrollment."""
    if not fusion_set:
        raise ValueError("MCC_FUSION_SET is not set")
    if not state_dir:
        raise ValueError("MCC_STATE_DIR is not set (where the install key and certificate are kept)")
    state = load_state(state_dir)
    if state is None:
        return enroll(base, fusion_set, state_dir, bundle_ctx)
    key = serialization.load_pem_private_key(state["key"].encode(), None)
    answer = state["answer"]
    pair = install_pair(answer, key)
    now = datetime.datetime.now(datetime.timezone.utc)
    if now < parse_time(answer["renewAfter"]):
        return pair
    # Each renewal brings a new key, made and kept before the request: a
    # retry after a lost answer sends the same key (the server answers it
    # again), while a copy of this state renewing on its own makes another
    # key, which the server takes for a clone and revokes the install.
    if not state.get("pendingKey"):
        state["pendingKey"] = pem_key(ec.generate_private_key(ec.SECP256R1()))
        save_state(state_dir, state)
    pending = serialization.load_pem_private_key(state["pendingKey"].encode(), None)
    try:
        renewed = post(base, fusion_set, "renew", ssl_context(*pair), {"csr": csr_of(pending)})
    except Refused as r:
        if r.renew_from:
            # Too early by the server's clock: the certificate is still good.
            print(f"renewal: too early (from {r.renew_from}); keeping serial {answer['serial']}")
            return pair
        if r.status in (403, 409):
            # Revoked, expired, or the install revoked as cloned.
            print(f"renewal refused (HTTP {r.status}): {r.detail}; enrolling again")
            return enroll(base, fusion_set, state_dir, bundle_ctx)
        if now < parse_time(answer["notAfter"]):
            print(f"renewal failed (HTTP {r.status}); keeping serial {answer['serial']}")
            return pair
        raise
    except OSError as e:
        if now < parse_time(answer["notAfter"]):
            print(f"renewal failed ({e}); keeping serial {answer['serial']}")
            return pair
        raise
    pair = install_pair(renewed, pending)
    save_state(state_dir, {"key": state["pendingKey"], "answer": renewed})
    print(f"renewed: serial {renewed['serial']}, renew after {renewed['renewAfter']}")
    return pair


def main():
    url = os.environ.get("MCC_URL")
    if not url:
        raise ValueError("MCC_URL is not set")
    bundle = None
    if os.environ.get("MCC_BUNDLE"):
        bundle = load_bundle(os.environ["MCC_BUNDLE"], os.environ.get("MCC_BUNDLE_PASSWORD_FILE"))
    pair = bundle
    enroll_url = os.environ.get("MCC_ENROLL_URL")
    if enroll_url and bundle is not None:
        try:
            pair = install_certificate(enroll_url, os.environ.get("MCC_FUSION_SET"),
                                       os.environ.get("MCC_STATE_DIR"), ssl_context(*bundle))
        except Refused as r:
            # The server said no (a revoked build, a limit): the app keeps
            # working with the bundle, and the gateway decides.
            print(f"enrollment refused (HTTP {r.status}): {r.detail}; using the bundle")
    return call(url, ssl_context(*pair) if pair else ssl_context())


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Exception as e:  # one line for the user, not a traceback
        print(f"error: {e}", file=sys.stderr)
        sys.exit(EXIT_ERROR)
