// KeystoreInstallStore is the Android-only part of an mcc client: device
// keys made in the Android Keystore (the first with the server's
// attestation challenge) and the server's answers in SharedPreferences.
// The enrollment, renewal and fallback are MccEnrollment's, the TLS
// MccTls's and the CSR MccCsr's: the code the Kotlin/JVM client shares
// and this project's tests run. This file is not built here (no Android
// SDK on the test machines); see README.md.
package mcc.example.android

import android.content.Context
import android.security.keystore.KeyGenParameterSpec
import android.security.keystore.KeyProperties
import java.security.KeyPair
import java.security.KeyPairGenerator
import java.security.KeyStore
import java.security.PrivateKey
import java.security.SecureRandom
import java.security.spec.ECGenParameterSpec
import java.util.Base64
import mcc.example.DeviceKey
import mcc.example.InstallStore
import mcc.example.Kept
import org.json.JSONObject

class KeystoreInstallStore(context: Context, fusionSet: String) : InstallStore {
    // Keep this file out of Auto Backup (android:fullBackupContent): the
    // Keystore keys are not backed up, so a restored copy names keys the
    // new device does not have. load() then finds none and the app
    // enrolls again, which is right, but the backup is dead weight.
    private val prefs = context.getSharedPreferences("mcc-install-$fusionSet", Context.MODE_PRIVATE)
    private val keyStore = KeyStore.getInstance("AndroidKeyStore").apply { load(null) }
    // Exactly this set's aliases: a set id may hold '-', so a prefix of
    // "bank" would also match the keys of "bank-prod".
    private val prefix = "mcc-install-$fusionSet-"
    private val ours = Regex("^" + Regex.escape(prefix) + "[0-9a-f]{16}$")
    private val aliasOf = HashMap<String, String>() // a public key's encoding, base64 -> its alias

    /** The Keystore attests the enrollment key: the server checks it against the set's attestation policy. */
    override val attests = true

    override fun load(): Kept? {
        val answer = prefs.getString("answer", null) ?: return null
        val key = prefs.getString("key", null)?.let { pair(it) } ?: return null
        return Kept(key, prefs.getString("pendingKey", null)?.let { pair(it) }, JSONObject(answer))
    }

    override fun save(kept: Kept) {
        val key = alias(kept.key)
        val pending = kept.pendingKey?.let { alias(it) }
        // commit, not apply: MccEnrollment sends the pending key only once
        // it is kept, so a retry after a crash sends the same key.
        val saved = prefs.edit()
            .putString("answer", kept.answer.toString())
            .putString("key", key)
            .putString("pendingKey", pending) // null removes it
            .commit()
        check(saved) { "mcc install state not saved" }
        // Keys no state names any more: the one a renewal replaced, or one
        // made before a crash.
        deleteKeysBut(key, pending)
    }

    override fun newKey(challenge: String?): DeviceKey {
        val alias = prefix + ByteArray(8).also { SecureRandom().nextBytes(it) }.joinToString("") { "%02x".format(it) }
        val spec = KeyGenParameterSpec.Builder(alias, KeyProperties.PURPOSE_SIGN)
            .setAlgorithmParameterSpec(ECGenParameterSpec("secp256r1"))
            // NONE too: Conscrypt signs the TLS handshake with a Keystore
            // key as NONEwithECDSA over the digest it made itself, and the
            // Keystore refuses a digest the key is not authorised for.
            .setDigests(KeyProperties.DIGEST_NONE, KeyProperties.DIGEST_SHA256)
        // The challenge is base64url, unpadded; the attestation chain then
        // names this app, its signing certificate and this enrollment.
        if (challenge != null) spec.setAttestationChallenge(Base64.getUrlDecoder().decode(challenge))
        val gen = KeyPairGenerator.getInstance(KeyProperties.KEY_ALGORITHM_EC, "AndroidKeyStore")
        gen.initialize(spec.build())
        val pair = gen.generateKeyPair()
        aliasOf[encoded(pair)] = alias
        if (challenge == null) return DeviceKey(pair)
        // Leaf first, each certificate's DER one after the other, as the
        // server's android-key verifier reads it.
        val chain = keyStore.getCertificateChain(alias).map { it.encoded }
        return DeviceKey(pair, JSONObject()
            .put("format", "android-key")
            .put("challenge", challenge)
            .put("data", Base64.getEncoder().encodeToString(chain.fold(ByteArray(0)) { a, b -> a + b })))
    }

    override fun clear() {
        prefs.edit().clear().commit()
        deleteKeysBut()
    }

    /** The Keystore key under [alias], or null when the Keystore lost it (a restore, a wipe). */
    private fun pair(alias: String): KeyPair? {
        val private = keyStore.getKey(alias, null) as? PrivateKey ?: return null
        val pair = KeyPair(keyStore.getCertificate(alias).publicKey, private)
        aliasOf[encoded(pair)] = alias
        return pair
    }

    private fun alias(pair: KeyPair) = aliasOf[encoded(pair)] ?: error("not a key of this store")

    private fun encoded(pair: KeyPair) = Base64.getEncoder().encodeToString(pair.public.encoded)

    private fun deleteKeysBut(vararg keep: String?) {
        for (a in keyStore.aliases().toList()) if (ours.matches(a) && a !in keep) keyStore.deleteEntry(a)
    }
}
