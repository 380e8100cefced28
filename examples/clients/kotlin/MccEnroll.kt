// MccEnrollment is the install certificate's life in an app, written once
// for the JVM and Android: enroll with the bundle for a key made on the
// device, use the install certificate, renew it after renewAfter with a
// new key, keep it while renewal is too early or the server is away,
// enroll again when the server refuses it, and fall back to the bundle
// when enrollment is refused. Where the keys live is the InstallStore's
// business: a file in this project's tests (Main.kt), the Android Keystore
// on a device (android/MccInstall.kt). JSON is org.json, which Android
// ships and Debian packages (libandroid-json-java).
package mcc.example

import java.io.ByteArrayInputStream
import java.io.IOException
import java.io.InputStream
import java.security.KeyPair
import java.security.SecureRandom
import java.security.cert.CertificateFactory
import java.security.cert.X509Certificate
import java.time.Instant
import java.util.Base64
import javax.net.ssl.KeyManager
import okhttp3.MediaType
import okhttp3.OkHttpClient
import okhttp3.Request
import okhttp3.RequestBody
import org.json.JSONObject

/** A device key and, when the store attests it, the attestation to send. */
class DeviceKey(val pair: KeyPair, val attestation: JSONObject? = null)

/**
 * What an app keeps of its install: the key of its certificate, the key a
 * renewal is under way for (made and kept before the request, so a retry
 * after a lost answer sends the same key), and the server's last answer.
 */
class Kept(val key: KeyPair, val pendingKey: KeyPair?, val answer: JSONObject)

/** Where an install is kept. */
interface InstallStore {
    /** Whether [newKey] attests the key it makes (it then needs a challenge at enrollment). */
    val attests: Boolean

    /** What is kept, or null before the first enrollment. */
    fun load(): Kept?

    /** Replaces what is kept, whole: a crash leaves the old state or the new one. */
    fun save(kept: Kept)

    /** A new P-256 key; [challenge] is the server's when [attests]. */
    fun newKey(challenge: String?): DeviceKey

    /** Forgets the install: the next start enrolls again. */
    fun clear()
}

/** The server's no: an application/problem+json answer. */
class Refusal(val status: Int, val detail: String, val renewFrom: String?) : Exception("HTTP $status: $detail")

class MccEnrollment(
    private val enrollUrl: String, // the server's --enroll-listen, https://mcc.example.com:8444
    private val fusionSet: String,
    private val serverCA: ByteArray?, // PEM; null: the platform's roots
    private val store: InstallStore,
    private val log: (String) -> Unit = { println(it) }
) {
    private val json = MediaType.parse("application/json")

    /**
     * The key managers to call the API with: the install certificate's
     * (enrolled, kept or renewed), or [bundle] when the server refused
     * enrollment; the gateway then decides on the bundle.
     */
    fun keyManagers(bundle: Array<KeyManager>, device: Map<String, String>): Array<KeyManager> = try {
        arrayOf(install(bundle, device))
    } catch (r: Refusal) {
        log("enrollment refused (HTTP ${r.status}): ${r.detail}; using the bundle")
        bundle
    }

    private fun install(bundle: Array<KeyManager>, device: Map<String, String>): FixedKeyManager {
        val kept = store.load() ?: return enroll(bundle, device)
        val serial = kept.answer.getString("serial")
        val current = keyManager(kept.key, kept.answer)
        if (Instant.now().isBefore(Instant.parse(kept.answer.getString("renewAfter")))) return current
        // Each renewal brings a new key, kept before the request: a copy
        // of this state renewing on its own makes another key, which the
        // server takes for a clone and revokes the install.
        val pending = kept.pendingKey ?: store.newKey(null).pair.also { store.save(Kept(kept.key, it, kept.answer)) }
        val next = try {
            post(arrayOf(current), "renew", JSONObject().put("csr", csr(pending)))
        } catch (r: Refusal) {
            when {
                r.renewFrom != null -> {
                    // Too early by the server's clock (this device's runs
                    // ahead): the certificate is still good.
                    log("renewal: too early (from ${r.renewFrom}); keeping serial $serial")
                    return current
                }
                r.status == 403 || r.status == 409 -> {
                    // Revoked, expired, or the install revoked as cloned.
                    log("renewal refused (HTTP ${r.status}): ${r.detail}; enrolling again")
                    store.clear()
                    return enroll(bundle, device)
                }
                stillValid(kept.answer) -> {
                    log("renewal failed (HTTP ${r.status}); keeping serial $serial")
                    return current
                }
                else -> throw r
            }
        } catch (e: IOException) {
            // The server is busy or unreachable: the certificate still works.
            if (!stillValid(kept.answer)) throw e
            log("renewal failed ($e); keeping serial $serial")
            return current
        }
        val renewed = keyManager(pending, next)
        store.save(Kept(pending, null, next))
        log("renewed: serial ${next.getString("serial")}, renew after ${next.getString("renewAfter")}")
        return renewed
    }

    /** Makes a device key, trades the bundle for its install certificate, keeps both. */
    private fun enroll(bundle: Array<KeyManager>, device: Map<String, String>): FixedKeyManager {
        // A new install id with every new key: the server binds an install
        // id to the key of its live certificate.
        val installId = ByteArray(16).also { SecureRandom().nextBytes(it) }.joinToString("") { "%02x".format(it) }
        val challenge = if (store.attests) {
            post(bundle, "enroll/challenge", JSONObject().put("installId", installId)).getString("challenge")
        } else {
            null
        }
        val key = store.newKey(challenge)
        val body = JSONObject()
            .put("csr", csr(key.pair))
            .put("installId", installId)
            .put("device", JSONObject(device))
        key.attestation?.let { body.put("attestation", it) }
        val answer = post(bundle, "enroll", body)
        val km = keyManager(key.pair, answer)
        store.save(Kept(key.pair, null, answer))
        log("enrolled: install ${answer.getString("installId")}, serial ${answer.getString("serial")}, valid until ${answer.getString("notAfter")}")
        return km
    }

    /** The install certificate of [answer] with its key, refused when it is not for that key. */
    private fun keyManager(key: KeyPair, answer: JSONObject): FixedKeyManager {
        val cert = CertificateFactory.getInstance("X.509")
            .generateCertificate(ByteArrayInputStream(answer.getString("certificate").toByteArray())) as X509Certificate
        // By encoding: an Android Keystore public key is another class than the
        // certificate's, and equals compares classes too.
        check(cert.publicKey.encoded.contentEquals(key.public.encoded)) { "the install certificate is not for this device's key" }
        // Both times are read on every start: refuse an answer without them
        // before it is kept.
        Instant.parse(answer.getString("renewAfter"))
        Instant.parse(answer.getString("notAfter"))
        return FixedKeyManager(key.private, arrayOf(cert))
    }

    private fun stillValid(answer: JSONObject) = Instant.now().isBefore(Instant.parse(answer.getString("notAfter")))

    // The server takes only the key from the CSR: the identity comes from
    // the certificate the request is made with.
    private fun csr(key: KeyPair) = Base64.getEncoder().encodeToString(MccCsr.der(key.public, key.private))

    /** Posts to an enrollment route over mTLS with [keyManagers]. */
    private fun post(keyManagers: Array<KeyManager>, route: String, body: JSONObject): JSONObject {
        val req = Request.Builder()
            .url("${enrollUrl.trimEnd('/')}/v1/fusion-sets/${java.net.URLEncoder.encode(fusionSet, "UTF-8")}/$route")
            .post(RequestBody.create(json, body.toString()))
            .build()
        client(keyManagers).newCall(req).execute().use { resp ->
            val text = resp.peekBody(1L shl 20).string()
            if (resp.isSuccessful) {
                // An IOException, as a server that is away: a renewal then
                // keeps the certificate it has.
                return try { JSONObject(text) } catch (e: org.json.JSONException) { throw IOException("$route: the answer is not JSON") }
            }
            val problem = try { JSONObject(text) } catch (e: org.json.JSONException) { JSONObject() }
            throw Refusal(
                resp.code(),
                problem.optString("detail").ifEmpty { problem.optString("title").ifEmpty { resp.message() } },
                problem.optString("renewFrom").ifEmpty { null })
        }
    }

    private fun client(keyManagers: Array<KeyManager>): OkHttpClient =
        MccTls.client(keyManagers, serverCA?.let { ByteArrayInputStream(it) as InputStream })
}
