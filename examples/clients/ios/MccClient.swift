// MccClient: the bundle as the client identity of a URLSession on iOS.
// Not built here (no Xcode on the test machines); see README.md.
//
// SecPKCS12Import refuses the AES-256 (PBES2) PKCS#12 file with
// errSecAuthFailed (-25293, "passphrase not correct"), as reported from
// 2021 to 2024. `mcc issue --profile ios` ships the 3DES PKCS#12 it takes
// inside an AES-256-GCM envelope (app.p12e), opened here in memory.
import CommonCrypto
import CryptoKit
import Foundation
import Security

enum MccError: Error { case envelope(String), pkcs12(OSStatus) }

/// The PKCS#12 bytes of a bundle, out of its envelope when it has one:
/// "MCCENV01", a 16-byte salt, a 12-byte nonce, then AES-256-GCM under
/// PBKDF2-HMAC-SHA256(password, salt, 10000) with the magic as additional data.
func openBundle(_ data: Data, password: String) throws -> Data {
    let magic = Data("MCCENV01".utf8)
    guard data.prefix(magic.count) == magic else { return data }
    guard data.count >= magic.count + 16 + 12 + 16 else { throw MccError.envelope("cut short") }
    let salt = data.subdata(in: magic.count..<magic.count + 16)
    let nonce = data.subdata(in: magic.count + 16..<magic.count + 28)
    let sealed = data.subdata(in: magic.count + 28..<data.count)
    var key = Data(count: 32)
    let pw = Array(password.utf8)
    let status = key.withUnsafeMutableBytes { k in
        salt.withUnsafeBytes { s in
            CCKeyDerivationPBKDF(CCPBKDFAlgorithm(kCCPBKDF2), pw.map { Int8(bitPattern: $0) }, pw.count,
                                 s.bindMemory(to: UInt8.self).baseAddress, salt.count,
                                 CCPseudoRandomAlgorithm(kCCPRFHmacAlgSHA256), 10000,
                                 k.bindMemory(to: UInt8.self).baseAddress, 32)
        }
    }
    guard status == kCCSuccess else { throw MccError.envelope("PBKDF2 failed") }
    let box = try AES.GCM.SealedBox(nonce: AES.GCM.Nonce(data: nonce),
                                    ciphertext: sealed.prefix(sealed.count - 16), tag: sealed.suffix(16))
    do {
        return try AES.GCM.open(box, using: SymmetricKey(data: key), authenticating: magic)
    } catch {
        throw MccError.envelope("does not open: wrong password or a damaged file")
    }
}

/// The identity and certificate chain in the bundle.
func identity(bundle: Data, password: String) throws -> URLCredential {
    let p12 = try openBundle(bundle, password: password)
    var items: CFArray?
    let status = SecPKCS12Import(p12 as CFData, [kSecImportExportPassphrase as String: password] as CFDictionary, &items)
    guard status == errSecSuccess, let first = (items as? [[String: Any]])?.first,
          let ident = first[kSecImportItemIdentity as String] else { throw MccError.pkcs12(status) }
    let chain = first[kSecImportItemCertChain as String] as? [SecCertificate] ?? []
    // URLCredential wants the intermediates only, the leaf comes with the identity.
    return URLCredential(identity: ident as! SecIdentity, certificates: Array(chain.dropFirst()), persistence: .forSession)
}

/// Answers the server's request for a client certificate with the bundle;
/// every other challenge (the server's own certificate) goes the default way.
final class MccSessionDelegate: NSObject, URLSessionDelegate {
    let credential: URLCredential
    init(credential: URLCredential) { self.credential = credential }

    func urlSession(_ session: URLSession, didReceive challenge: URLAuthenticationChallenge,
                    completionHandler: @escaping (URLSession.AuthChallengeDisposition, URLCredential?) -> Void) {
        if challenge.protectionSpace.authenticationMethod == NSURLAuthenticationMethodClientCertificate {
            completionHandler(.useCredential, credential)
        } else {
            completionHandler(.performDefaultHandling, nil)
        }
    }
}

/// The device key for an install certificate: made in the Secure Enclave,
/// never leaving it. The CSR is signed with SecKeyCreateSignature
/// (.ecdsaSignatureMessageX962SHA256), the same DER as MccCsr.kt writes.
func makeDeviceKey(tag: String) throws -> SecKey {
    var error: Unmanaged<CFError>?
    guard let access = SecAccessControlCreateWithFlags(nil, kSecAttrAccessibleWhenUnlockedThisDeviceOnly, .privateKeyUsage, &error),
          let key = SecKeyCreateRandomKey([
              kSecAttrKeyType as String: kSecAttrKeyTypeECSECPrimeRandom,
              kSecAttrKeySizeInBits as String: 256,
              kSecAttrTokenID as String: kSecAttrTokenIDSecureEnclave,
              kSecPrivateKeyAttrs as String: [kSecAttrIsPermanent as String: true,
                                              kSecAttrApplicationTag as String: Data(tag.utf8),
                                              kSecAttrAccessControl as String: access],
          ] as CFDictionary, &error) else { throw error!.takeRetainedValue() as Error }
    return key
}
