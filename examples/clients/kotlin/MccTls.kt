// MccTls is the part of an mcc client that an Android app and a JVM
// program share line for line: the bundle as the client key, the server's
// CA, and an OkHttp client on both. The Kotlin/JVM client (Main.kt) runs it
// in this project's tests; an Android app calls the same functions with
// the bundle from its assets and the password from its build.
package mcc.example

import java.io.InputStream
import java.net.InetAddress
import java.net.Socket
import java.security.KeyStore
import java.security.Principal
import java.security.PrivateKey
import java.security.cert.CertificateFactory
import java.security.cert.X509Certificate
import java.util.concurrent.TimeUnit
import javax.crypto.AEADBadTagException
import javax.crypto.Cipher
import javax.crypto.SecretKeyFactory
import javax.crypto.spec.GCMParameterSpec
import javax.crypto.spec.PBEKeySpec
import javax.crypto.spec.SecretKeySpec
import javax.net.ssl.KeyManager
import javax.net.ssl.KeyManagerFactory
import javax.net.ssl.SNIHostName
import javax.net.ssl.SSLContext
import javax.net.ssl.SSLEngine
import javax.net.ssl.SSLSocket
import javax.net.ssl.SSLSocketFactory
import javax.net.ssl.TrustManagerFactory
import javax.net.ssl.X509ExtendedKeyManager
import javax.net.ssl.X509TrustManager
import okhttp3.OkHttpClient

object MccTls {
    /**
     * An OkHttp client presenting the bundle (none when [bundle] is null,
     * as a script that is not the app) and trusting [serverCA] (a PEM
     * stream), or the platform's roots when it is null.
     *
     * The KeyManagerFactory is initialised with the bundle's KeyStore:
     * SSLContext.init with null key managers sends no certificate at all,
     * silently.
     */
    fun client(bundle: InputStream?, password: CharArray, serverCA: InputStream?): OkHttpClient =
        client(bundle?.let { bundleKeyManagers(it, password) }, serverCA)

    /** The key managers presenting the bundle (PKCS#12, or inside an envelope). */
    fun bundleKeyManagers(bundle: InputStream, password: CharArray): Array<KeyManager> {
        var data = bundle.use { it.readBytes() }
        if (isEnvelope(data)) data = openEnvelope(data, password)
        val ks = KeyStore.getInstance("PKCS12")
        ks.load(data.inputStream(), password)
        val kmf = KeyManagerFactory.getInstance(KeyManagerFactory.getDefaultAlgorithm())
        kmf.init(ks, password)
        return kmf.keyManagers
    }

    /**
     * An OkHttp client presenting what [keyManagers] hold (nothing when
     * null) and trusting [serverCA] (a PEM stream), or the platform's roots
     * when it is null.
     */
    fun client(keyManagers: Array<KeyManager>?, serverCA: InputStream?): OkHttpClient {
        val trustManager = trust(serverCA)
        val ctx = SSLContext.getInstance("TLS")
        ctx.init(keyManagers, arrayOf(trustManager), null)
        return OkHttpClient.Builder()
            .sslSocketFactory(NamingSocketFactory(ctx.socketFactory), trustManager)
            .connectTimeout(30, TimeUnit.SECONDS)
            .readTimeout(30, TimeUnit.SECONDS)
            .build()
    }

    /** Trusts the certificates of [serverCA] (PEM), or the platform's roots when it is null. */
    fun trust(serverCA: InputStream?): X509TrustManager {
        val tmf = TrustManagerFactory.getInstance(TrustManagerFactory.getDefaultAlgorithm())
        if (serverCA != null) {
            val trust = KeyStore.getInstance(KeyStore.getDefaultType())
            trust.load(null, null)
            serverCA.use {
                CertificateFactory.getInstance("X.509").generateCertificates(it).forEachIndexed { i, c ->
                    trust.setCertificateEntry("server-ca-$i", c)
                }
            }
            tmf.init(trust)
        } else {
            tmf.init(null as KeyStore?)
        }
        return tmf.trustManagers.filterIsInstance<X509TrustManager>().first()
    }

    /** A JSON string's escapes (Go writes <, > and & as u003c escapes). */
    fun unescape(s: String): String {
        val b = StringBuilder(s.length)
        var i = 0
        while (i < s.length) {
            val c = s[i]
            if (c != '\\' || i + 1 >= s.length) {
                b.append(c)
                i++
                continue
            }
            val n = s[i + 1]
            i += 2
            when (n) {
                'n' -> b.append('\n')
                't' -> b.append('\t')
                'r' -> b.append('\r')
                'b' -> b.append('\b')
                'u' -> if (i + 4 <= s.length) {
                    b.append(s.substring(i, i + 4).toInt(16).toChar())
                    i += 4
                }
                else -> b.append(n)
            }
        }
        return b.toString()
    }

    /**
     * A bundle in an AES-256-GCM envelope (mcc issue --profile
     * android|ios): magic, 16-byte salt, 12-byte nonce, then the PKCS#12
     * file sealed with AES-256-GCM under PBKDF2-HMAC-SHA256(password, salt,
     * 10000), the magic as additional data. Android's importer takes the
     * 3DES PKCS#12 inside (API 26+ for PBKDF2WithHmacSHA256).
     */
    private val ENVELOPE_MAGIC = "MCCENV01".toByteArray(Charsets.US_ASCII)

    fun isEnvelope(data: ByteArray): Boolean =
        data.size >= ENVELOPE_MAGIC.size && data.copyOf(ENVELOPE_MAGIC.size).contentEquals(ENVELOPE_MAGIC)

    /** The PKCS#12 file inside an envelope, in memory. */
    fun openEnvelope(data: ByteArray, password: CharArray): ByteArray {
        val m = ENVELOPE_MAGIC.size
        val header = m + 16 + 12
        require(data.size >= header + 16) { "the bundle envelope is cut short" }
        val key = SecretKeyFactory.getInstance("PBKDF2WithHmacSHA256")
            .generateSecret(PBEKeySpec(password, data.copyOfRange(m, m + 16), 10000, 256)).encoded
        val gcm = Cipher.getInstance("AES/GCM/NoPadding")
        gcm.init(Cipher.DECRYPT_MODE, SecretKeySpec(key, "AES"), GCMParameterSpec(128, data, m + 16, 12))
        gcm.updateAAD(ENVELOPE_MAGIC)
        try {
            return gcm.doFinal(data, header, data.size - header)
        } catch (e: AEADBadTagException) {
            throw IllegalArgumentException("the bundle envelope does not open (wrong password or damaged file)")
        }
    }

    /**
     * The block the gateway answered, from its JSON: the set's message and
     * the reference the user quotes to support. Null when the answer is
     * not a block. (org.json on Android, Moshi or Gson elsewhere; this
     * reads two string fields without a dependency.)
     */
    fun block(json: String): Pair<String, String>? {
        // Possessive quantifiers: a plain (a|b)* recurses per character in
        // java.util.regex and overflows the stack on a long message.
        fun field(name: String): String? =
            Regex("\"" + Regex.escape(name) + "\"\\s*:\\s*\"((?:[^\"\\\\]++|\\\\.)*+)\"").find(json)
                ?.groupValues?.get(1)?.let(::unescape)
        val message = field("message") ?: return null
        return Pair(message, field("externalID") ?: "")
    }
}

/**
 * Presents one key and its certificate: the install certificate, whose
 * key an app makes itself (in the Android Keystore on a device, where a
 * KeyManagerFactory over "AndroidKeyStore" is not portable across
 * versions, and in memory here). An X509ExtendedKeyManager: TLS on an
 * SSLEngine asks a plain X509KeyManager nothing, and the handshake goes
 * out without a certificate, silently.
 */
class FixedKeyManager(private val key: PrivateKey, private val chain: Array<X509Certificate>) : X509ExtendedKeyManager() {
    override fun chooseClientAlias(keyType: Array<String>?, issuers: Array<Principal>?, socket: Socket?) = ALIAS
    override fun chooseEngineClientAlias(keyType: Array<String>?, issuers: Array<Principal>?, engine: SSLEngine?) = ALIAS
    override fun getCertificateChain(alias: String?): Array<X509Certificate>? = if (alias == ALIAS) chain else null
    override fun getPrivateKey(alias: String?): PrivateKey? = if (alias == ALIAS) key else null
    override fun getClientAliases(keyType: String?, issuers: Array<Principal>?) = arrayOf(ALIAS)
    override fun chooseServerAlias(keyType: String?, issuers: Array<Principal>?, socket: Socket?): String? = null
    override fun getServerAliases(keyType: String?, issuers: Array<Principal>?): Array<String>? = null

    private companion object {
        const val ALIAS = "mcc-install"
    }
}

/**
 * Sends the host name (SNI) for every name, as browsers and curl do. The
 * JDK sends none for a name without a dot, such as localhost, and a
 * gateway that asks for client certificates (Caddy does then) refuses a
 * request whose Host differs from the TLS name with 421 Misdirected Request.
 */
class NamingSocketFactory(private val inner: SSLSocketFactory) : SSLSocketFactory() {
    override fun createSocket(s: Socket, host: String, port: Int, autoClose: Boolean): Socket =
        name(inner.createSocket(s, host, port, autoClose), host)
    override fun createSocket(host: String, port: Int): Socket = name(inner.createSocket(host, port), host)
    override fun createSocket(host: String, port: Int, localHost: InetAddress, localPort: Int): Socket =
        name(inner.createSocket(host, port, localHost, localPort), host)
    override fun createSocket(host: InetAddress, port: Int): Socket = inner.createSocket(host, port)
    override fun createSocket(address: InetAddress, port: Int, localAddress: InetAddress, localPort: Int): Socket =
        inner.createSocket(address, port, localAddress, localPort)
    override fun getDefaultCipherSuites(): Array<String> = inner.defaultCipherSuites
    override fun getSupportedCipherSuites(): Array<String> = inner.supportedCipherSuites

    private fun name(socket: Socket, host: String): Socket {
        if (socket is SSLSocket && !host.isEmpty() && !host.contains(':') && !host.all { it.isDigit() || it == '.' }) {
            val params = socket.sslParameters
            params.serverNames = listOf(SNIHostName(host))
            socket.sslParameters = params
        }
        return socket
    }
}
