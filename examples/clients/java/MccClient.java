import java.io.ByteArrayInputStream;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.net.Socket;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.attribute.PosixFilePermissions;
import java.security.KeyFactory;
import java.security.KeyPair;
import java.security.KeyPairGenerator;
import java.security.KeyStore;
import java.security.Principal;
import java.security.PrivateKey;
import java.security.SecureRandom;
import java.security.Signature;
import java.security.cert.CertificateFactory;
import java.security.cert.X509Certificate;
import java.security.spec.ECGenParameterSpec;
import java.security.spec.PKCS8EncodedKeySpec;
import java.security.spec.X509EncodedKeySpec;
import java.time.Duration;
import java.time.Instant;
import java.net.URLEncoder;
import java.util.Arrays;
import java.util.Base64;
import java.util.HexFormat;
import java.util.Map;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import javax.crypto.AEADBadTagException;
import javax.crypto.Cipher;
import javax.crypto.SecretKeyFactory;
import javax.crypto.spec.GCMParameterSpec;
import javax.crypto.spec.PBEKeySpec;
import javax.crypto.spec.SecretKeySpec;
import javax.net.ssl.KeyManager;
import javax.net.ssl.KeyManagerFactory;
import javax.net.ssl.SSLContext;
import javax.net.ssl.SSLEngine;
import javax.net.ssl.TrustManagerFactory;
import javax.net.ssl.X509ExtendedKeyManager;
import javax.net.ssl.X509KeyManager;
import org.json.JSONException;
import org.json.JSONObject;

/**
 * The smallest complete Java client of an mcc-protected API, on the path an
 * Android app takes: KeyStore "PKCS12" from the bundle, a KeyManagerFactory
 * over it, an SSLContext from both, and an HTTP client on that context. It
 * calls the API with the device context headers and shows the block message
 * with its reference when the gateway refuses. When an enrollment URL is
 * set it trades the bundle for an install certificate (a key made here),
 * uses it, renews it, and falls back to the bundle when enrollment is
 * refused; the CSR is written by hand (the JDK and Android have no CSR
 * builder) and signed through java.security.Signature.
 *
 * <p>The JDK (17 or later: AES-256 PKCS#12 bundles open from 8u301 and
 * 11.0.12 on) and org.json, which Android ships (Debian:
 * libandroid-json-java). Configuration comes from the environment (README.md); the
 * bundle's password is read from a file, never written in the code.
 */
public final class MccClient {
    static final int EXIT_ALLOWED = 0, EXIT_ERROR = 1, EXIT_BLOCKED = 3;
    static final int MAX_BODY = 1 << 20;

    public static void main(String[] args) {
        try {
            System.exit(run());
        } catch (Exception e) {
            // One line for the user, not a stack trace.
            System.err.println("error: " + e);
            System.exit(EXIT_ERROR);
        }
    }

    static String env(String name, String def) {
        String v = System.getenv(name);
        if (v != null && !v.isEmpty()) return v;
        if (def != null) return def;
        throw new IllegalStateException(name + " is not set");
    }

    static int run() throws Exception {
        String url = env("MCC_URL", null);
        KeyManager[] keyManagers = bundleKeyManagers();
        String enrollURL = System.getenv("MCC_ENROLL_URL");
        if (enrollURL != null && !enrollURL.isEmpty() && keyManagers != null) {
            try {
                keyManagers = new KeyManager[] {installKeyManager(
                        enrollURL, env("MCC_FUSION_SET", null), Path.of(env("MCC_STATE_DIR", null)), keyManagers)};
            } catch (Refused r) {
                // The server said no (a revoked build, a limit): the app
                // keeps working with the bundle, and the gateway decides.
                System.out.println("enrollment refused (HTTP " + r.status + "): " + r.detail + "; using the bundle");
            }
        }
        HttpClient client = HttpClient.newBuilder()
                .sslContext(sslContext(keyManagers))
                .connectTimeout(Duration.ofSeconds(30))
                .build();
        HttpRequest req = HttpRequest.newBuilder(URI.create(url))
                .timeout(Duration.ofSeconds(30))
                // The device context the fusion set maps into its events
                // (device_headers); a real app fills them from the device.
                .header("X-Device-Id", env("MCC_DEVICE_ID", "java-example-device"))
                .header("X-Os-Version", System.getProperty("java.version"))
                .header("X-Device-Platform", "java")
                .header("X-App-Version", "1.0.0")
                // JSON block answers carry the message and the reference.
                .header("Accept", "application/json")
                .GET()
                .build();
        HttpResponse<InputStream> resp = client.send(req, HttpResponse.BodyHandlers.ofInputStream());
        String body;
        try (InputStream in = resp.body()) {
            // A bounded read: the answer may come from any upstream.
            body = new String(in.readNBytes(MAX_BODY), StandardCharsets.UTF_8);
        }
        if (resp.statusCode() == 200) {
            System.out.println("allowed: HTTP 200: " + body.strip());
            return EXIT_ALLOWED;
        }
        String message = jsonString(body, "message");
        if (message == null || message.isEmpty()) {
            throw new IllegalStateException("the API answered HTTP " + resp.statusCode() + ": "
                    + body.substring(0, Math.min(200, body.length())));
        }
        String ref = jsonString(body, "externalID");
        if (ref == null) ref = resp.headers().firstValue("X-Mcc-External-Id").orElse("");
        System.out.println("blocked: " + message + " (reference: " + ref + ")");
        return EXIT_BLOCKED;
    }

    /**
     * The bundle's key managers (null without MCC_BUNDLE, as from a script
     * that is not the app). The KeyManagerFactory must be initialised with
     * the bundle's KeyStore: SSLContext.init with null key managers sends
     * no certificate at all, silently.
     */
    static KeyManager[] bundleKeyManagers() throws Exception {
        String bundle = System.getenv("MCC_BUNDLE");
        if (bundle == null || bundle.isEmpty()) return null;
        {
            char[] password = Files.readString(Path.of(env("MCC_BUNDLE_PASSWORD_FILE", null)), StandardCharsets.UTF_8)
                    .replaceAll("[\r\n]+$", "").toCharArray();
            byte[] data = Files.readAllBytes(Path.of(bundle));
            if (isEnvelope(data)) {
                data = openEnvelope(data, password);
            }
            KeyStore ks = KeyStore.getInstance("PKCS12");
            ks.load(new ByteArrayInputStream(data), password);
            KeyManagerFactory kmf = KeyManagerFactory.getInstance(KeyManagerFactory.getDefaultAlgorithm());
            kmf.init(ks, password);
            return kmf.getKeyManagers();
        }
    }

    /** The TLS context: keyManagers (may be null) and the server's CA (or the system roots). */
    static SSLContext sslContext(KeyManager[] keyManagers) throws Exception {
        TrustManagerFactory tmf = null;
        String serverCA = System.getenv("MCC_SERVER_CA");
        if (serverCA != null && !serverCA.isEmpty()) {
            KeyStore trust = KeyStore.getInstance(KeyStore.getDefaultType());
            trust.load(null, null);
            CertificateFactory cf = CertificateFactory.getInstance("X.509");
            int i = 0;
            for (var c : cf.generateCertificates(new ByteArrayInputStream(Files.readAllBytes(Path.of(serverCA))))) {
                trust.setCertificateEntry("server-ca-" + i++, (X509Certificate) c);
            }
            tmf = TrustManagerFactory.getInstance(TrustManagerFactory.getDefaultAlgorithm());
            tmf.init(trust);
        }
        SSLContext ctx = SSLContext.getInstance("TLS");
        ctx.init(keyManagers, tmf == null ? null : tmf.getTrustManagers(), null);
        return ctx;
    }

    /**
     * A bundle in an AES-256-GCM envelope (mcc issue --profile
     * android|ios): magic, 16-byte salt, 12-byte nonce, then the PKCS#12
     * file sealed with AES-256-GCM under PBKDF2-HMAC-SHA256(password, salt,
     * 10000), the magic as additional data.
     */
    static final byte[] ENVELOPE_MAGIC = "MCCENV01".getBytes(StandardCharsets.US_ASCII);

    static boolean isEnvelope(byte[] data) {
        return data.length >= ENVELOPE_MAGIC.length
                && Arrays.equals(Arrays.copyOf(data, ENVELOPE_MAGIC.length), ENVELOPE_MAGIC);
    }

    /** The PKCS#12 file inside an envelope, in memory. */
    static byte[] openEnvelope(byte[] data, char[] password) throws Exception {
        int m = ENVELOPE_MAGIC.length, header = m + 16 + 12;
        if (data.length < header + 16) throw new IllegalArgumentException("the bundle envelope is cut short");
        byte[] salt = Arrays.copyOfRange(data, m, m + 16);
        byte[] key = SecretKeyFactory.getInstance("PBKDF2WithHmacSHA256")
                .generateSecret(new PBEKeySpec(password, salt, 10000, 256)).getEncoded();
        Cipher gcm = Cipher.getInstance("AES/GCM/NoPadding");
        gcm.init(Cipher.DECRYPT_MODE, new SecretKeySpec(key, "AES"), new GCMParameterSpec(128, data, m + 16, 12));
        gcm.updateAAD(ENVELOPE_MAGIC);
        try {
            return gcm.doFinal(data, header, data.length - header);
        } catch (AEADBadTagException e) {
            throw new IllegalArgumentException("the bundle envelope does not open (wrong password or damaged file)");
        }
    }

    /**
     * A top-level string field of the block answer. The JDK has no JSON
     * parser; an app uses its own (org.json on Android, Moshi, Gson).
     */
    static String jsonString(String json, String field) {
        // Possessive quantifiers: a plain (a|b)* recurses per character in
        // java.util.regex and overflows the stack on a long message.
        Matcher m = Pattern.compile("\"" + Pattern.quote(field) + "\"\\s*:\\s*\"((?:[^\"\\\\]++|\\\\.)*+)\"").matcher(json);
        if (!m.find()) return null;
        return unescape(m.group(1));
    }

    /** A JSON string's escapes (Go writes <, > and & as \\u003c and so on). */
    static String unescape(String s) {
        StringBuilder b = new StringBuilder(s.length());
        for (int i = 0; i < s.length(); i++) {
            char c = s.charAt(i);
            if (c != '\\' || i + 1 >= s.length()) {
                b.append(c);
                continue;
            }
            char n = s.charAt(++i);
            switch (n) {
                case 'n': b.append('\n'); break;
                case 't': b.append('\t'); break;
                case 'r': b.append('\r'); break;
                case 'b': b.append('\b'); break;
                case 'f': b.append('\f'); break;
                case 'u':
                    if (i + 4 < s.length()) {
                        b.append((char) Integer.parseInt(s.substring(i + 1, i + 5), 16));
                        i += 4;
                    }
                    break;
                default: b.append(n);
            }
        }
        return b.toString();
    }

    // --- Enrollment (docs/api.md, Enrollment) ---

    /** The server's no: an application/problem+json answer. */
    static final class Refused extends Exception {
        final int status;
        final String detail, renewFrom;

        Refused(int status, String detail, String renewFrom) {
            super("HTTP " + status + ": " + detail);
            this.status = status;
            this.detail = detail;
            this.renewFrom = renewFrom;
        }
    }

    /**
     * The install certificate to call with: the kept one, renewed once its
     * renewAfter has passed, or a new enrollment. The state file
     * (MCC_STATE_DIR/install.json) holds the key, the key a renewal is
     * under way for, and the server's answer; an Android app keeps its keys
     * in the Keystore instead.
     */
    static X509KeyManager installKeyManager(String base, String set, Path dir, KeyManager[] bundle) throws Exception {
        JSONObject state = loadState(dir);
        if (state == null) return enroll(base, set, dir, bundle);
        JSONObject answer = state.getJSONObject("answer");
        String serial = answer.getString("serial");
        X509KeyManager current = keyManager(readKey(state.getString("key")), answer);
        if (Instant.now().isBefore(Instant.parse(answer.getString("renewAfter")))) return current;
        // Each renewal brings a new key, made and kept before the request:
        // a retry after a lost answer sends the same key, while a copy of
        // this state renewing on its own makes another key, which the
        // server takes for a clone and revokes the install.
        if (!state.has("pendingKey")) {
            state.put("pendingKey", pem(newKey()));
            saveState(dir, state);
        }
        KeyPair pending = readKey(state.getString("pendingKey"));
        boolean stillValid = Instant.now().isBefore(Instant.parse(answer.getString("notAfter")));
        JSONObject renewed;
        try {
            renewed = post(base, set, "renew", new KeyManager[] {current}, new JSONObject().put("csr", csr(pending)));
        } catch (Refused r) {
            if (r.renewFrom != null) {
                // Too early by the server's clock: the certificate is still good.
                System.out.println("renewal: too early (from " + r.renewFrom + "); keeping serial " + serial);
                return current;
            }
            if (r.status == 403 || r.status == 409) {
                // Revoked, expired, or the install revoked as cloned.
                System.out.println("renewal refused (HTTP " + r.status + "): " + r.detail + "; enrolling again");
                return enroll(base, set, dir, bundle);
            }
            if (!stillValid) throw r;
            System.out.println("renewal failed (HTTP " + r.status + "); keeping serial " + serial);
            return current;
        } catch (IOException e) {
            // The server is busy or unreachable: the certificate still works.
            if (!stillValid) throw e;
            System.out.println("renewal failed (" + e + "); keeping serial " + serial);
            return current;
        }
        X509KeyManager next = keyManager(pending, renewed);
        saveState(dir, new JSONObject().put("key", state.getString("pendingKey")).put("answer", renewed));
        System.out.println("renewed: serial " + renewed.getString("serial") + ", renew after " + renewed.getString("renewAfter"));
        return next;
    }

    /** Makes a device key, trades the bundle for its install certificate over mTLS, keeps both. */
    static X509KeyManager enroll(String base, String set, Path dir, KeyManager[] bundle) throws Exception {
        KeyPair key = newKey();
        // A new install id with every new key: the server binds an install
        // id to the key of its live certificate.
        byte[] id = new byte[16];
        new SecureRandom().nextBytes(id);
        JSONObject answer = post(base, set, "enroll", bundle, new JSONObject()
                .put("csr", csr(key))
                .put("installId", HexFormat.of().formatHex(id))
                .put("device", new JSONObject(Map.of(
                        "deviceID", env("MCC_DEVICE_ID", "java-example-device"), "devicePlatform", "java"))));
        X509KeyManager km = keyManager(key, answer);
        saveState(dir, new JSONObject().put("key", pem(key)).put("answer", answer));
        System.out.println("enrolled: install " + answer.getString("installId") + ", serial " + answer.getString("serial")
                + ", valid until " + answer.getString("notAfter"));
        return km;
    }

    static KeyPair newKey() throws Exception {
        KeyPairGenerator gen = KeyPairGenerator.getInstance("EC");
        gen.initialize(new ECGenParameterSpec("secp256r1"));
        return gen.generateKeyPair();
    }

    /** Posts to an enrollment route over mTLS with keyManagers. */
    static JSONObject post(String base, String set, String route, KeyManager[] keyManagers, JSONObject body) throws Exception {
        HttpClient client = HttpClient.newBuilder().sslContext(sslContext(keyManagers)).connectTimeout(Duration.ofSeconds(30)).build();
        HttpRequest req = HttpRequest.newBuilder(URI.create(base.replaceAll("/+$", "") + "/v1/fusion-sets/" + URLEncoder.encode(set, StandardCharsets.UTF_8) + "/" + route))
                .timeout(Duration.ofSeconds(30))
                .header("Content-Type", "application/json")
                .POST(HttpRequest.BodyPublishers.ofString(body.toString()))
                .build();
        HttpResponse<InputStream> resp = client.send(req, HttpResponse.BodyHandlers.ofInputStream());
        String text;
        try (InputStream in = resp.body()) {
            text = new String(in.readNBytes(MAX_BODY), StandardCharsets.UTF_8);
        }
        if (resp.statusCode() == 200 || resp.statusCode() == 201) {
            try {
                return new JSONObject(text);
            } catch (JSONException e) {
                // An IOException, as a server that is away: a renewal then
                // keeps the certificate it has.
                throw new java.io.IOException(route + ": the answer is not JSON");
            }
        }
        JSONObject problem;
        try {
            problem = new JSONObject(text);
        } catch (JSONException e) {
            problem = new JSONObject();
        }
        String detail = problem.optString("detail");
        if (detail.isEmpty()) detail = problem.optString("title", "HTTP " + resp.statusCode());
        String renewFrom = problem.optString("renewFrom");
        throw new Refused(resp.statusCode(), detail, renewFrom.isEmpty() ? null : renewFrom);
    }

    /** The install certificate of answer with its key, refused when it is not for that key. */
    static X509KeyManager keyManager(KeyPair key, JSONObject answer) throws Exception {
        X509Certificate cert = (X509Certificate) CertificateFactory.getInstance("X.509")
                .generateCertificate(new ByteArrayInputStream(answer.getString("certificate").getBytes(StandardCharsets.US_ASCII)));
        if (!Arrays.equals(cert.getPublicKey().getEncoded(), key.getPublic().getEncoded())) {
            throw new IllegalStateException("the install certificate is not for this device's key");
        }
        // Both times are read on every start: refuse an answer without them
        // before it is kept.
        Instant.parse(answer.getString("renewAfter"));
        Instant.parse(answer.getString("notAfter"));
        return new FixedKeyManager(key.getPrivate(), new X509Certificate[] {cert});
    }

    /**
     * Presents one key and its certificate: the install certificate. An
     * X509ExtendedKeyManager, because HttpClient runs TLS on an SSLEngine
     * and the JDK asks a plain X509KeyManager nothing there: the handshake
     * then goes out without a certificate, silently.
     */
    static final class FixedKeyManager extends X509ExtendedKeyManager {
        static final String ALIAS = "mcc-install";
        final PrivateKey key;
        final X509Certificate[] chain;

        FixedKeyManager(PrivateKey key, X509Certificate[] chain) {
            this.key = key;
            this.chain = chain;
        }

        @Override public String chooseClientAlias(String[] keyType, Principal[] issuers, Socket socket) { return ALIAS; }
        @Override public String chooseEngineClientAlias(String[] keyType, Principal[] issuers, SSLEngine engine) { return ALIAS; }
        @Override public X509Certificate[] getCertificateChain(String alias) { return ALIAS.equals(alias) ? chain : null; }
        @Override public PrivateKey getPrivateKey(String alias) { return ALIAS.equals(alias) ? key : null; }
        @Override public String[] getClientAliases(String keyType, Principal[] issuers) { return new String[] {ALIAS}; }
        @Override public String chooseServerAlias(String keyType, Principal[] issuers, Socket socket) { return null; }
        @Override public String[] getServerAliases(String keyType, Principal[] issuers) { return null; }
    }

    /**
     * The base64 of a PKCS#10 request for key: version 0, an empty subject,
     * the key, no attributes, signed with ECDSA-SHA256. The server takes
     * only the key from it: the identity comes from the certificate the
     * request is made with.
     */
    static String csr(KeyPair key) throws Exception {
        byte[] info = der(0x30, new byte[] {0x02, 0x01, 0x00}, der(0x30), key.getPublic().getEncoded(), new byte[] {(byte) 0xA0, 0x00});
        Signature signer = Signature.getInstance("SHA256withECDSA");
        signer.initSign(key.getPrivate());
        signer.update(info);
        byte[] signature = signer.sign(); // DER ECDSA-Sig-Value
        // ecdsa-with-SHA256, 1.2.840.10045.4.3.2
        byte[] algorithm = der(0x30, new byte[] {0x06, 0x08, 0x2A, (byte) 0x86, 0x48, (byte) 0xCE, 0x3D, 0x04, 0x03, 0x02});
        return Base64.getEncoder().encodeToString(der(0x30, info, algorithm, der(0x03, new byte[] {0x00}, signature)));
    }

    /** One DER element: tag, length (short or long form), value. */
    static byte[] der(int tag, byte[]... parts) {
        ByteArrayOutputStream value = new ByteArrayOutputStream();
        for (byte[] p : parts) value.writeBytes(p);
        int n = value.size();
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        out.write(tag);
        if (n < 0x80) {
            out.write(n);
        } else if (n < 0x100) {
            out.write(0x81);
            out.write(n);
        } else {
            out.write(0x82);
            out.write(n >> 8);
            out.write(n & 0xFF);
        }
        out.writeBytes(value.toByteArray());
        return out.toByteArray();
    }

    static final String STATE_FILE = "install.json";

    static JSONObject loadState(Path dir) throws Exception {
        Path file = dir.resolve(STATE_FILE);
        if (!Files.exists(file)) return null;
        JSONObject state;
        try {
            state = new JSONObject(Files.readString(file));
        } catch (JSONException e) {
            // Not e's message: org.json quotes the whole text, keys and all.
            throw new IllegalStateException("the install state in " + dir + " is damaged");
        }
        if (!state.has("key") || !state.has("answer")) throw new IllegalStateException("the install state in " + dir + " is damaged");
        return state;
    }

    /** Writes the state whole: a temporary file (0600) moved into place. */
    static void saveState(Path dir, JSONObject state) throws Exception {
        Files.createDirectories(dir, PosixFilePermissions.asFileAttribute(PosixFilePermissions.fromString("rwx------")));
        Files.setPosixFilePermissions(dir, PosixFilePermissions.fromString("rwx------"));
        Path tmp = Files.createTempFile(dir, ".install-", ".json");
        try {
            // Written through to the disk before the rename: a power loss
            // leaves the old state or the new one, never an empty file.
            try (var ch = java.nio.channels.FileChannel.open(tmp, java.nio.file.StandardOpenOption.WRITE)) {
                ch.write(java.nio.ByteBuffer.wrap(state.toString().getBytes(StandardCharsets.UTF_8)));
                ch.force(true);
            }
            Files.move(tmp, dir.resolve(STATE_FILE), StandardCopyOption.ATOMIC_MOVE);
        } finally {
            Files.deleteIfExists(tmp);
        }
    }

    /** The private key (PKCS#8) and its public key as PEM: the JDK does not derive one from the other. */
    static String pem(KeyPair key) {
        Base64.Encoder b64 = Base64.getMimeEncoder(64, new byte[] {'\n'});
        return "-----BEGIN PRIVATE KEY-----\n" + b64.encodeToString(key.getPrivate().getEncoded()) + "\n-----END PRIVATE KEY-----\n"
                + "-----BEGIN PUBLIC KEY-----\n" + b64.encodeToString(key.getPublic().getEncoded()) + "\n-----END PUBLIC KEY-----\n";
    }

    static KeyPair readKey(String pem) throws Exception {
        KeyFactory kf = KeyFactory.getInstance("EC");
        return new KeyPair(
                kf.generatePublic(new X509EncodedKeySpec(pemBlock(pem, "PUBLIC KEY"))),
                kf.generatePrivate(new PKCS8EncodedKeySpec(pemBlock(pem, "PRIVATE KEY"))));
    }

    static byte[] pemBlock(String pem, String type) {
        Matcher m = Pattern.compile("-----BEGIN " + type + "-----([A-Za-z0-9+/=\\s]++)-----END " + type + "-----").matcher(pem);
        if (!m.find()) throw new IllegalStateException("the install state is damaged: no " + type);
        return Base64.getMimeDecoder().decode(m.group(1));
    }
}
