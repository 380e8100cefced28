// MccCsr writes the PKCS#10 certificate signing request an enrollment
// sends, by hand: neither the JDK nor Android has a CSR builder, and a
// library (BouncyCastle) is a large dependency for some 40 lines of DER.
// The request is signed through java.security.Signature, so the same code
// signs with a software key here and with an Android Keystore key on a
// device (android/MccInstall.kt). The server takes only the key from it:
// the subject is empty, the identity comes from the build certificate.
package mcc.example

import java.io.ByteArrayOutputStream
import java.security.PrivateKey
import java.security.PublicKey
import java.security.Signature

object MccCsr {
    /** The DER of a CSR for [publicKey] (EC P-256), signed by [privateKey]. */
    fun der(publicKey: PublicKey, privateKey: PrivateKey): ByteArray {
        val info = seq(
            byteArrayOf(0x02, 0x01, 0x00), // version 1 (0)
            seq(), // subject: empty
            publicKey.encoded, // SubjectPublicKeyInfo, DER already
            byteArrayOf(0xA0.toByte(), 0x00) // attributes: none
        )
        val signer = Signature.getInstance("SHA256withECDSA")
        signer.initSign(privateKey)
        signer.update(info)
        val signature = signer.sign() // DER ECDSA-Sig-Value
        // ecdsa-with-SHA256, 1.2.840.10045.4.3.2
        val algorithm = seq(byteArrayOf(0x06, 0x08, 0x2A, 0x86.toByte(), 0x48, 0xCE.toByte(), 0x3D, 0x04, 0x03, 0x02))
        return seq(info, algorithm, tlv(0x03, byteArrayOf(0x00) + signature))
    }

    private fun seq(vararg parts: ByteArray): ByteArray {
        val body = ByteArrayOutputStream()
        parts.forEach { body.write(it) }
        return tlv(0x30, body.toByteArray())
    }

    /** A DER tag, length (short or long form) and value. */
    private fun tlv(tag: Int, value: ByteArray): ByteArray {
        val out = ByteArrayOutputStream()
        out.write(tag)
        val n = value.size
        when {
            n < 0x80 -> out.write(n)
            n < 0x100 -> { out.write(0x81); out.write(n) }
            n < 0x10000 -> { out.write(0x82); out.write(n shr 8); out.write(n and 0xFF) }
            else -> throw IllegalArgumentException("a CSR part of $n bytes")
        }
        out.write(value)
        return out.toByteArray()
    }
}
