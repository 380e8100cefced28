// Package pki is the CI/CD side of mcc: a certificate authority kept in a
// directory, client certificates for app builds (identity and build
// metadata in the format of package certid), PKCS#12 bundles, revocation
// lists and CRLs, signed certified-secure records, and a hash-chained,
// signed audit log. The `mcc ca`, `mcc issue`, `mcc revoke` and
// `mcc certify` commands are thin wrappers over it.
//
// # CA directory (InitCA, LoadCA)
//
//	ca.pem         CA certificate                        public   0644
//	ca-key.pem     CA private key (PKCS#8 PEM)           PRIVATE  0600
//	revoked.txt    revoked serials, read by gateways     public   0644
//	crl.pem        CRL signed by the CA                  public   0644
//	audit.log      hash-chained, signed JSON lines       0600 (names builds and builders)
//	.lock          advisory lock for concurrent runs     0600
//
// The directory is created 0700. revoked.txt and crl.pem are replaced
// atomically (temporary file and rename), so a gateway that watches them
// reads the old file or the new one, never half of one.
//
// # Issuance (CA.Issue, CA.IssueFiles)
//
// One client certificate per app build: a fresh ECDSA P-256 key, a random
// 128-bit serial, EKU clientAuth, KeyUsage digitalSignature, CA:FALSE,
// exactly one URI SAN "mcc://<fusion-set>/<app>", and the build metadata in
// the Subject (see certid). IssueFiles writes:
//
//	<out>                    PKCS#12, AES-256-CBC / PBKDF2-HMAC-SHA256    PRIVATE 0600
//	<out>.password           its random password (64 hex chars, no        PRIVATE 0600
//	                         trailing newline: the file is the password)
//	<legacy-out>             optional PKCS#12, 3DES / SHA-1 MAC (2048     PRIVATE 0600
//	                         iterations)
//	<legacy-out>.password    its own random password                      PRIVATE 0600
//	<out>.certified.json     the signed certified-secure record           public  0644
//
// and appends an "issue" entry to the CA's audit log. Both bundles carry a
// friendlyName on the key ("<app> <build> (<set>)", see FriendlyName),
// which Java and Android keystores use as the alias. The legacy bundle
// exists for importers that reject AES/PBKDF2 PKCS#12 files: iOS
// SecPKCS12Import and configuration profiles, the Android Settings
// certificate installer and Android 13 and older platform keystores. Its
// algorithms are weak; its protection is the random password. Ship it only
// where the modern bundle is refused.
//
// # Audit log
//
// Every append checks the chain first and refuses a damaged log, and it
// refuses to start a new log for an existing CA: only InitCA writes entry
// 1, the "init" entry naming the CA's fingerprint, and VerifyAudit requires
// it. A deleted audit.log therefore stops `mcc issue`, `mcc revoke` and
// `mcc cert create` (restore it from a backup) instead of going unnoticed.
//
// # Control-channel certificates (CA.IssueControlCert, IssueControlCert)
//
// mTLS certificates for mcc xds, mcc authz and Envoy: ECDSA P-256, EKU
// serverAuth or clientAuth, the SANs asked for, 90 days by default, an
// "issue-control" audit entry each. They come from a CA of their own: a CA
// that has issued app builds refuses to issue control certificates and the
// reverse, so an app bundle (extractable from every installed app) can
// never authenticate on a control channel.
//
// # Certified-secure record (CA.NewRecord, VerifyRecord)
//
// Schema "mcc.certified-secure/v1": fusion set, app, build, the fusion
// set's effective protections (when the issuance named the set file), the
// certificate (serial, SHA-256, validity, subject, issuer, identity URI,
// PEM), each bundle's SHA-256 and encryption parameters (never a password),
// issuedAt, the CA's fingerprint, and the CA's signature (ECDSA P-256/P-384
// with SHA-256, or RSA-PSS with SHA-256, base64) over json.Marshal of the
// record without its signature. The file is that encoding indented;
// VerifyRecord accepts only exactly that, so any edit fails a named check.
//
// # Demo PKI (EnsureDemo)
//
// The quickstart's demo PKI; see Demo for which files are private.
package pki
