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
import java.security.cert.CertificateFactory
import java.util.concurrent.TimeUnit
import javax.net.ssl.KeyManagerFactory
import javax.net.ssl.SNIHostName
import javax.net.ssl.SSLContext
import javax.net.ssl.SSLSocket
import javax.net.ssl.SSLSocketFactory
import javax.net.ssl.TrustManagerFactory
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
    fun client(bundle: InputStream?, password: CharArray, serverCA: InputStream?): OkHttpClient {
        var keyManagers: Array<javax.net.ssl.KeyManager>? = null
        if (bundle != null) {
            val ks = KeyStore.getInstance("PKCS12")
            bundle.use { ks.load(it, password) }
            val kmf = KeyManagerFactory.getInstance(KeyManagerFactory.getDefaultAlgorithm())
            kmf.init(ks, password)
            keyManagers = kmf.keyManagers
        }
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
        val trustManager = tmf.trustManagers.filterIsInstance<X509TrustManager>().first()
        val ctx = SSLContext.getInstance("TLS")
        ctx.init(keyManagers, arrayOf(trustManager), null)
        return OkHttpClient.Builder()
            .sslSocketFactory(NamingSocketFactory(ctx.socketFactory), trustManager)
            .connectTimeout(30, TimeUnit.SECONDS)
            .readTimeout(30, TimeUnit.SECONDS)
            .build()
    }

    /**
     * The block the gateway answered, from its JSON: the set's message and
     * the reference the user quotes to support. Null when the answer is
     * not a block. (org.json on Android, Moshi or Gson elsewhere; this
     * reads two string fields without a dependency.)
     */
    fun block(json: String): Pair<String, String>? {
        fun field(name: String): String? =
            Regex("\"" + Regex.escape(name) + "\"\\s*:\\s*\"((?:[^\"\\\\]|\\\\.)*)\"").find(json)
                ?.groupValues?.get(1)?.replace("\\\"", "\"")?.replace("\\\\", "\\")
        val message = field("message") ?: return null
        return Pair(message, field("externalID") ?: "")
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
