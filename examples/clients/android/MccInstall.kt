// MccInstall is the Android-only part of an mcc client: a device key made
// in the Android Keystore with an attestation challenge, enrolled with the
// build's bundle for an install certificate, and presented on every call.
// Everything else is shared with the Kotlin/JVM client that this
// project's tests run: MccTls (the bundle, the server's CA, OkHttp) and
// MccCsr (the CSR, signed through java.security.Signature, which the
// Keystore key serves). This file is not built here (no Android SDK on
// the test machines); see README.md.
package mcc.example.android

import android.security.keystore.KeyGenParameterSpec
import android.security.keystore.KeyProperties
import java.io.ByteArrayInputStream
import java.net.Socket
import java.security.KeyPairGenerator
import java.security.KeyStore
import java.security.Principal
import java.security.PrivateKey
import java.security.cert.CertificateFactory
import java.security.cert.X509Certificate
import java.security.spec.ECGenParameterSpec
import java.util.Base64
import javax.net.ssl.SSLContext
import javax.net.ssl.TrustManagerFactory
import javax.net.ssl.X509KeyManager
import javax.net.ssl.X509TrustManager
import mcc.example.MccCsr
import mcc.example.MccTls
import okhttp3.MediaType
import okhttp3.OkHttpClient
import okhttp3.Request
import okhttp3.RequestBody
import org.json.JSONObject

class MccInstall(
    private val enrollUrl: String, // https://mcc.example.com:8444, the server's --enroll-listen
    private val fusionSet: String,
    private val installId: String, // made once per install and kept (SharedPreferences)
) {
    private val alias = "mcc-install-$fusionSet"
    private val keyStore = KeyStore.getInstance("AndroidKeyStore").apply { load(null) }
    private val json = MediaType.parse("application/json")

    /**
     * Enrolls once: asks the server for a challenge, makes the key in the
     * Keystore with it (the attestation chain then names this app and this
     * enrollment), and trades the bundle for an install certificate.
     * [bundleClient] is MccTls.client(assets.open("app.p12e"), password, null).
     */
    fun enroll(bundleClient: OkHttpClient, device: Map<String, String>) {
        val challenge = post(bundleClient, "enroll/challenge", JSONObject().put("installId", installId))
            .getString("challenge")
        val gen = KeyPairGenerator.getInstance(KeyProperties.KEY_ALGORITHM_EC, "AndroidKeyStore")
        gen.initialize(
            KeyGenParameterSpec.Builder(alias, KeyProperties.PURPOSE_SIGN)
                .setAlgorithmParameterSpec(ECGenParameterSpec("secp256r1"))
                .setDigests(KeyProperties.DIGEST_SHA256)
                .setAttestationChallenge(Base64.getUrlDecoder().decode(challenge)) // base64url, unpadded
                .build()
        )
        val pair = gen.generateKeyPair()
        // Leaf first, as the server's android-key verifier reads it.
        val chain = keyStore.getCertificateChain(alias).map { it.encoded }
        val body = JSONObject()
            .put("csr", Base64.getEncoder().encodeToString(MccCsr.der(pair.public, pair.private)))
            .put("installId", installId)
            .put("device", JSONObject(device))
            .put("attestation", JSONObject()
                .put("format", "android-key")
                .put("challenge", challenge)
                .put("data", Base64.getEncoder().encodeToString(chain.fold(ByteArray(0)) { a, b -> a + b })))
        val answer = post(bundleClient, "enroll", body)
        // The Keystore keeps the key where it was made; the certificate
        // chain beside it replaces the attestation chain.
        val cert = CertificateFactory.getInstance("X.509")
            .generateCertificate(ByteArrayInputStream(answer.getString("certificate").toByteArray())) as X509Certificate
        keyStore.setKeyEntry(alias, keyStore.getKey(alias, null), null, arrayOf(cert))
        // Keep answer.getString("renewAfter"): renew from then on (POST
        // .../renew over the install certificate, as the Go and Python
        // example clients do), and enroll again on 403 or 409.
    }

    /** An OkHttp client presenting the install certificate. */
    fun client(serverTrust: X509TrustManager = platformTrust()): OkHttpClient {
        val ctx = SSLContext.getInstance("TLS")
        ctx.init(arrayOf(InstallKeyManager()), arrayOf(serverTrust), null)
        return OkHttpClient.Builder().sslSocketFactory(ctx.socketFactory, serverTrust).build()
    }

    /**
     * Presents the Keystore key and its install certificate. A
     * KeyManagerFactory over "AndroidKeyStore" is not portable across
     * Android versions; a key manager naming the alias is.
     */
    private inner class InstallKeyManager : X509KeyManager {
        override fun chooseClientAlias(keyType: Array<String>?, issuers: Array<Principal>?, socket: Socket?) = alias
        override fun getCertificateChain(a: String?): Array<X509Certificate> =
            keyStore.getCertificateChain(alias).map { it as X509Certificate }.toTypedArray()
        override fun getPrivateKey(a: String?) = keyStore.getKey(alias, null) as PrivateKey
        override fun getClientAliases(keyType: String?, issuers: Array<Principal>?) = arrayOf(alias)
        override fun chooseServerAlias(keyType: String?, issuers: Array<Principal>?, socket: Socket?): String? = null
        override fun getServerAliases(keyType: String?, issuers: Array<Principal>?): Array<String>? = null
    }

    private fun post(client: OkHttpClient, route: String, body: JSONObject): JSONObject {
        val req = Request.Builder()
            .url("$enrollUrl/v1/fusion-sets/$fusionSet/$route")
            .post(RequestBody.create(json, body.toString()))
            .build()
        client.newCall(req).execute().use { resp ->
            val text = resp.peekBody(1L shl 20).string()
            if (!resp.isSuccessful) throw IllegalStateException("$route: HTTP ${resp.code()}: $text")
            return JSONObject(text)
        }
    }

    private fun platformTrust(): X509TrustManager {
        val tmf = TrustManagerFactory.getInstance(TrustManagerFactory.getDefaultAlgorithm())
        tmf.init(null as KeyStore?)
        return tmf.trustManagers.filterIsInstance<X509TrustManager>().first()
    }

    companion object {
        /** The bundle client, from the app's assets (MccTls, shared with the JVM). */
        fun bundleClient(bundle: java.io.InputStream, password: CharArray): OkHttpClient =
            MccTls.client(bundle, password, null)
    }
}
