// The Kotlin/JVM client: MccTls (shared with an Android app) driven from
// the environment, with the exit codes of the other example clients.
package mcc.example

import java.io.File
import kotlin.system.exitProcess
import okhttp3.Request

const val EXIT_ALLOWED = 0
const val EXIT_ERROR = 1
const val EXIT_BLOCKED = 3

fun env(name: String, def: String? = null): String =
    System.getenv(name)?.takeIf { it.isNotEmpty() } ?: def ?: throw IllegalStateException("$name is not set")

fun run(): Int {
    val bundle = System.getenv("MCC_BUNDLE")?.takeIf { it.isNotEmpty() }
    // The file holds the password only; a trailing newline is not part of it.
    val password = if (bundle == null) CharArray(0)
        else File(env("MCC_BUNDLE_PASSWORD_FILE")).readText().trimEnd('\r', '\n').toCharArray()
    val client = MccTls.client(
        bundle?.let { File(it).inputStream() },
        password,
        System.getenv("MCC_SERVER_CA")?.takeIf { it.isNotEmpty() }?.let { File(it).inputStream() })
    val request = Request.Builder().url(env("MCC_URL"))
        // The device context the fusion set maps into its events; an app
        // fills them from the device (Settings.Secure, Build.VERSION).
        .header("X-Device-Id", env("MCC_DEVICE_ID", "kotlin-example-device"))
        .header("X-Os-Version", System.getProperty("java.version"))
        .header("X-Device-Platform", "kotlin-jvm")
        .header("X-App-Version", "1.0.0")
        .header("Accept", "application/json")
        .build()
    client.newCall(request).execute().use { resp ->
        // A bounded read: the answer may come from any upstream.
        val body = resp.peekBody(1L shl 20).string()
        if (resp.code() == 200) {
            println("allowed: HTTP 200: ${body.trim()}")
            return EXIT_ALLOWED
        }
        val block = MccTls.block(body)
            ?: throw IllegalStateException("the API answered HTTP ${resp.code()}: ${body.take(200)}")
        val ref = block.second.ifEmpty { resp.header("X-Mcc-External-Id") ?: "" }
        println("blocked: ${block.first} (reference: $ref)")
        return EXIT_BLOCKED
    }
}

fun main(args: Array<String>) {
    val code = try {
        // `csr`: print the base64 of a CSR for a new P-256 key, as an
        // enrollment sends it (the test checks it with Go's parser, the
        // server's).
        if (args.firstOrNull() == "csr") {
            val gen = java.security.KeyPairGenerator.getInstance("EC")
            gen.initialize(java.security.spec.ECGenParameterSpec("secp256r1"))
            val pair = gen.generateKeyPair()
            println(java.util.Base64.getEncoder().encodeToString(MccCsr.der(pair.public, pair.private)))
            exitProcess(EXIT_ALLOWED)
        }
        run()
    } catch (e: Exception) {
        // One line for the user, not a stack trace.
        System.err.println("error: $e")
        EXIT_ERROR
    }
    exitProcess(code)
}
