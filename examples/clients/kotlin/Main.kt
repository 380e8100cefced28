// The Kotlin/JVM client: MccTls and MccEnrollment (shared with an Android
// app) driven from the environment, with the exit codes of the other
// example clients. FileInstallStore is the JVM's place for the install:
// a file, where an Android app has its Keystore.
package mcc.example

import java.io.File
import java.nio.file.Files
import java.nio.file.StandardCopyOption
import java.nio.file.attribute.PosixFilePermissions
import java.security.KeyFactory
import java.security.KeyPair
import java.security.KeyPairGenerator
import java.security.spec.ECGenParameterSpec
import java.security.spec.PKCS8EncodedKeySpec
import java.security.spec.X509EncodedKeySpec
import java.util.Base64
import kotlin.system.exitProcess
import okhttp3.Request
import org.json.JSONObject

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
    val serverCA = System.getenv("MCC_SERVER_CA")?.takeIf { it.isNotEmpty() }?.let { File(it).readBytes() }
    var keyManagers = bundle?.let { MccTls.bundleKeyManagers(File(it).inputStream(), password) }
    val enrollUrl = System.getenv("MCC_ENROLL_URL")?.takeIf { it.isNotEmpty() }
    if (enrollUrl != null && keyManagers != null) {
        val enrollment = MccEnrollment(enrollUrl, env("MCC_FUSION_SET"), serverCA, FileInstallStore(File(env("MCC_STATE_DIR"))))
        keyManagers = enrollment.keyManagers(keyManagers, mapOf(
            "deviceID" to env("MCC_DEVICE_ID", "kotlin-example-device"), "devicePlatform" to "kotlin-jvm"))
    }
    val client = MccTls.client(keyManagers, serverCA?.inputStream())
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

/**
 * The install kept in MCC_STATE_DIR/install.json (0600, in a 0700
 * directory, replaced whole by a rename), the keys as PEM: the PKCS#8
 * private key and its public key, which the JDK does not derive from it.
 * An Android app keeps its keys in the Keystore instead, where they cannot
 * be read out.
 */
class FileInstallStore(private val dir: File) : InstallStore {
    private val file = File(dir, "install.json")
    override val attests = false

    override fun load(): Kept? {
        if (!file.exists()) return null
        val doc = try {
            JSONObject(file.readText())
        } catch (e: org.json.JSONException) {
            // Not e's message: org.json quotes the whole text, keys and all.
            throw IllegalStateException("the install state in $dir is damaged")
        }
        return Kept(readKey(doc.getString("key")), doc.optString("pendingKey").ifEmpty { null }?.let(::readKey), doc.getJSONObject("answer"))
    }

    override fun save(kept: Kept) {
        val doc = JSONObject().put("key", pem(kept.key)).put("answer", kept.answer)
        kept.pendingKey?.let { doc.put("pendingKey", pem(it)) }
        val owner = PosixFilePermissions.asFileAttribute(PosixFilePermissions.fromString("rwx------"))
        Files.createDirectories(dir.toPath(), owner)
        Files.setPosixFilePermissions(dir.toPath(), PosixFilePermissions.fromString("rwx------"))
        val tmp = Files.createTempFile(dir.toPath(), ".install-", ".json") // 0600
        try {
            // Written through to the disk before the rename: a power loss
            // leaves the old state or the new one, never an empty file.
            java.nio.channels.FileChannel.open(tmp, java.nio.file.StandardOpenOption.WRITE).use {
                it.write(java.nio.ByteBuffer.wrap(doc.toString().toByteArray()))
                it.force(true)
            }
            Files.move(tmp, file.toPath(), StandardCopyOption.ATOMIC_MOVE)
        } finally {
            Files.deleteIfExists(tmp)
        }
    }

    override fun newKey(challenge: String?): DeviceKey {
        val gen = KeyPairGenerator.getInstance("EC")
        gen.initialize(ECGenParameterSpec("secp256r1"))
        return DeviceKey(gen.generateKeyPair())
    }

    override fun clear() {
        file.delete()
    }

    private fun pem(key: KeyPair): String {
        val b64 = Base64.getMimeEncoder(64, "\n".toByteArray())
        return "-----BEGIN PRIVATE KEY-----\n${b64.encodeToString(key.private.encoded)}\n-----END PRIVATE KEY-----\n" +
            "-----BEGIN PUBLIC KEY-----\n${b64.encodeToString(key.public.encoded)}\n-----END PUBLIC KEY-----\n"
    }

    private fun readKey(pem: String): KeyPair {
        fun block(type: String): ByteArray {
            val m = Regex("-----BEGIN $type-----([A-Za-z0-9+/=\\s]+)-----END $type-----").find(pem)
                ?: throw IllegalStateException("the install state in $dir is damaged: no $type")
            return Base64.getMimeDecoder().decode(m.groupValues[1])
        }
        val kf = KeyFactory.getInstance("EC")
        return KeyPair(kf.generatePublic(X509EncodedKeySpec(block("PUBLIC KEY"))), kf.generatePrivate(PKCS8EncodedKeySpec(block("PRIVATE KEY"))))
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
