import java.io.ByteArrayInputStream;
import java.io.InputStream;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.KeyStore;
import java.security.cert.CertificateFactory;
import java.security.cert.X509Certificate;
import java.time.Duration;
import java.util.Arrays;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import javax.crypto.AEADBadTagException;
import javax.crypto.Cipher;
import javax.crypto.SecretKeyFactory;
import javax.crypto.spec.GCMParameterSpec;
import javax.crypto.spec.PBEKeySpec;
import javax.crypto.spec.SecretKeySpec;
import javax.net.ssl.KeyManagerFactory;
import javax.net.ssl.SSLContext;
import javax.net.ssl.TrustManagerFactory;

/**
 * The smallest complete Java client of an mcc-protected API, on the path an
 * Android app takes: KeyStore "PKCS12" from the bundle, a KeyManagerFactory
 * over it, an SSLContext from both, and an HTTP client on that context. It
 * calls the API with the device context headers and shows the block message
 * with its reference when the gateway refuses.
 *
 * <p>Only the JDK (17 or later: AES-256 PKCS#12 bundles open from 8u301 and
 * 11.0.12 on). Configuration comes from the environment (README.md); the
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
        HttpClient client = HttpClient.newBuilder()
                .sslContext(sslContext())
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
     * The TLS context: the bundle as the client key (none without
     * MCC_BUNDLE, as from a script that is not the app), and the server's
     * CA (or the system roots). The KeyManagerFactory must be initialised
     * with the bundle's KeyStore: SSLContext.init with null key managers
     * sends no certificate at all, silently.
     */
    static SSLContext sslContext() throws Exception {
        KeyManagerFactory kmf = null;
        String bundle = System.getenv("MCC_BUNDLE");
        if (bundle != null && !bundle.isEmpty()) {
            char[] password = Files.readString(Path.of(env("MCC_BUNDLE_PASSWORD_FILE", null)), StandardCharsets.UTF_8)
                    .replaceAll("[\r\n]+$", "").toCharArray();
            byte[] data = Files.readAllBytes(Path.of(bundle));
            if (isEnvelope(data)) {
                data = openEnvelope(data, password);
            }
            KeyStore ks = KeyStore.getInstance("PKCS12");
            ks.load(new ByteArrayInputStream(data), password);
            kmf = KeyManagerFactory.getInstance(KeyManagerFactory.getDefaultAlgorithm());
            kmf.init(ks, password);
        }
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
        ctx.init(kmf == null ? null : kmf.getKeyManagers(), tmf == null ? null : tmf.getTrustManagers(), null);
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
}
