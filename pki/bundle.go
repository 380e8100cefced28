package pki

import (
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"os"
	"strings"

	"github.com/mccgate/mcc/pki/certid"
	pkcs12 "software.sslmate.com/src/go-pkcs12"
)

// BundleFormat selects the PKCS#12 encryption profile.
type BundleFormat string

const (
	// FormatModern2023 is the default: PBES2 with PBKDF2-HMAC-SHA256 and
	// AES-256-CBC for both the key and the certificates, HMAC-SHA256 MAC
	// (go-pkcs12 Modern2023). Read by OpenSSL 1.1.1+, curl, Node, Java 12+,
	// BouncyCastle, Windows Server 2019+.
	FormatModern2023 BundleFormat = "pkcs12-modern2023"
	// FormatLegacyDES is the mobile-compatibility bundle: pbeWithSHA1And3-
	// KeyTripleDES-CBC and an HMAC-SHA1 MAC over a key derived with 2048
	// iterations (go-pkcs12 LegacyDES, whose MAC uses 1 iteration, raised to
	// 2048: what `openssl pkcs12 -export` has written by default since
	// OpenSSL 0.9.7 and still writes with -legacy, so every importer that
	// takes 3DES bundles takes it; a SHA-256 MAC is not used because the
	// importers that need this bundle, iOS first, are not known to accept
	// it). It exists
	// only because iOS SecPKCS12Import and configuration profiles, the
	// Android Settings certificate installer and Android 13 and older
	// platform keystores reject or mis-report AES/PBKDF2 bundles. 3DES with
	// SHA-1 is weak cryptography: the bundle's real protection is the random
	// 128-bit+ password, so keep it as secret as the modern one and prefer
	// the modern bundle wherever the importer accepts it.
	FormatLegacyDES BundleFormat = "pkcs12-legacy-3des"
	// FormatLegacyEnveloped is the legacy bundle inside an AES-256-GCM
	// envelope (envelope.go): what iOS and older Android apps ship, so the
	// file in the app package is AES-256 at rest while the platform
	// importer gets the 3DES PKCS#12 it takes. DecodeBundle opens both.
	FormatLegacyEnveloped BundleFormat = "pkcs12-legacy-3des-aes256gcm"
)

// passwordBytes is the bundle password's entropy: 32 random bytes, written
// as 64 hex characters (256 bits, above the 128-bit floor).
const passwordBytes = 32

// BundleParams describes a bundle's encryption, as stated in records.
type BundleParams struct {
	Format        BundleFormat `json:"format"`
	Cipher        string       `json:"cipher"`
	KDF           string       `json:"kdf"`
	PRF           string       `json:"prf"`
	Iterations    int          `json:"iterations"`
	MAC           string       `json:"mac"`
	MACIterations int          `json:"macIterations"`
}

// Iteration counts are go-pkcs12's defaults (2048), except the legacy MAC's
// (see FormatLegacyDES). A password of 256 random bits makes brute force
// moot, so raising them further would only cost importers time.
const legacyIterations = 2048

var bundleProfiles = map[BundleFormat]struct {
	enc    *pkcs12.Encoder
	params BundleParams
}{
	FormatModern2023: {pkcs12.Modern2023, BundleParams{
		Format: FormatModern2023, Cipher: "AES-256-CBC", KDF: "PBKDF2", PRF: "hmacWithSHA256",
		Iterations: 2048, MAC: "sha256", MACIterations: 2048,
	}},
	FormatLegacyDES: {pkcs12.LegacyDES.WithIterations(legacyIterations), BundleParams{
		Format: FormatLegacyDES, Cipher: "3DES-CBC (pbeWithSHA1And3-KeyTripleDES-CBC)", KDF: "PKCS12-KDF", PRF: "sha1",
		Iterations: legacyIterations, MAC: "sha1", MACIterations: legacyIterations,
	}},
	// The parameters are the envelope's, the layer that protects the file
	// at rest; the PKCS#12 inside is FormatLegacyDES.
	FormatLegacyEnveloped: {pkcs12.LegacyDES.WithIterations(legacyIterations), BundleParams{
		Format: FormatLegacyEnveloped, Cipher: "AES-256-GCM", KDF: "PBKDF2", PRF: "hmacWithSHA256",
		Iterations: envelopeIterations, MAC: "gcm", MACIterations: envelopeIterations,
	}},
}

// platformFormats are the bundle an app of each platform ships: the
// modern one where the importer takes AES-256 PKCS#12, the legacy one in
// an AES-256 envelope where it does not (iOS SecPKCS12Import, Android 13
// and older; examples/clients/README.md has the measured and reported
// matrix).
var platformFormats = map[string]BundleFormat{
	"modern":  FormatModern2023,
	"android": FormatLegacyEnveloped,
	"ios":     FormatLegacyEnveloped,
}

// PlatformProfiles lists the names PlatformFormat takes.
func PlatformProfiles() []string { return []string{"modern", "android", "ios"} }

// PlatformFormat is the bundle format of a platform profile.
func PlatformFormat(profile string) (BundleFormat, error) {
	f, ok := platformFormats[profile]
	if !ok {
		return "", fmt.Errorf("unknown bundle profile %q (want modern, android or ios)", profile)
	}
	return f, nil
}

// Bundle is an encoded PKCS#12 file and its password. Both are secret.
type Bundle struct {
	Params   BundleParams
	Data     []byte // the PKCS#12 file: private (as strong as Password)
	Password string // private: never print or log it
	SHA256   string // hex SHA-256 of Data
}

// NewPassword returns a random bundle password: 64 hex characters.
func NewPassword() (string, error) {
	b := make([]byte, passwordBytes)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("generating bundle password: %w", err)
	}
	return hex.EncodeToString(b), nil
}

// EncodeBundle encodes the issued key, certificate and CA certificate as a
// PKCS#12 file with a fresh random password.
func EncodeBundle(iss *Issued, format BundleFormat) (*Bundle, error) {
	prof, ok := bundleProfiles[format]
	if !ok {
		return nil, fmt.Errorf("unknown bundle format %q", format)
	}
	pw, err := NewPassword()
	if err != nil {
		return nil, err
	}
	data, err := prof.enc.Encode(iss.Key, iss.Cert, []*x509.Certificate{iss.CA}, pw)
	if err != nil {
		return nil, fmt.Errorf("encoding %s bundle: %w", format, err)
	}
	if data, err = addKeyFriendlyName(data, pw, FriendlyName(iss)); err != nil {
		return nil, fmt.Errorf("encoding %s bundle: %w", format, err)
	}
	if format == FormatLegacyEnveloped {
		if data, err = SealEnvelope(data, pw); err != nil {
			return nil, err
		}
	}
	return &Bundle{Params: prof.params, Data: data, Password: pw, SHA256: Fingerprint(data)}, nil
}

// FriendlyName is the label a bundle carries for its key (the PKCS#12
// friendlyName attribute): "<app id> <build id> (<fusion set>)", e.g.
// "com.example.bank build-4711 (bank-prod)". Importers show it as the
// identity's name or use it as the keystore alias.
func FriendlyName(iss *Issued) string {
	set, app, _ := certid.Identity(iss.Cert)
	name := fmt.Sprintf("%s %s (%s)", app, iss.Build.ID, set)
	// BMPString holds no character beyond U+FFFF.
	return strings.Map(func(r rune) rune {
		if r > 0xFFFF || (r >= 0xD800 && r < 0xE000) {
			return '?'
		}
		return r
	}, name)
}

// PasswordPath is where a bundle's password file lives: beside the bundle.
func PasswordPath(bundlePath string) string { return bundlePath + ".password" }

// Write writes the bundle to path and its password to PasswordPath(path),
// both 0600. It refuses to replace existing files. The password file holds
// the password and nothing else, no trailing newline: tools that read the
// whole file as the password (Node's passphrase, many CI secret stores)
// would otherwise get a wrong password ("mac verify failure").
func (b *Bundle) Write(path string) error {
	pwPath := PasswordPath(path)
	for _, p := range []string{path, pwPath} {
		exists, err := fileExists(p)
		if err != nil {
			return err
		}
		if exists {
			return fmt.Errorf("%s already exists; refusing to overwrite it", p)
		}
	}
	if err := writeNewFile(path, b.Data, modePrivate); err != nil {
		return fmt.Errorf("writing bundle: %w", err)
	}
	if err := writeNewFile(pwPath, []byte(b.Password), modePrivate); err != nil {
		os.Remove(path)
		return fmt.Errorf("writing bundle password: %w", err)
	}
	return nil
}

// ReadPasswordFile reads a password file: its first line, without the line
// ending, so files written by Write (no newline) and by hand or by older
// mcc versions (one trailing newline) both work.
func ReadPasswordFile(path string) (string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("reading password file: %w", err)
	}
	pw, _, _ := strings.Cut(string(data), "\n")
	pw = strings.TrimSuffix(pw, "\r")
	if pw == "" {
		return "", fmt.Errorf("password file %s is empty", path)
	}
	return pw, nil
}

// DecodeBundle opens a PKCS#12 file (any format go-pkcs12 reads), or one
// in a bundle envelope.
func DecodeBundle(data []byte, password string) (key any, leaf *x509.Certificate, chain []*x509.Certificate, err error) {
	if IsEnvelope(data) {
		if data, err = OpenEnvelope(data, password); err != nil {
			return nil, nil, nil, err
		}
	}
	return pkcs12.DecodeChain(data, password)
}
