package threat

import "go.uber.org/zap/zapcore"

// MarshalLogObject writes the certificate's public description as zap
// fields, the same keys as its JSON form.
func (c *CertInfo) MarshalLogObject(enc zapcore.ObjectEncoder) error {
	enc.AddString("serial", c.Serial)
	enc.AddString("sha256", c.SHA256)
	enc.AddString("subject", c.Subject)
	enc.AddString("issuer", c.Issuer)
	enc.AddTime("notBefore", c.NotBefore)
	enc.AddTime("notAfter", c.NotAfter)
	if c.AppID != "" {
		enc.AddString("appID", c.AppID)
	}
	if c.BuildID != "" {
		enc.AddString("buildID", c.BuildID)
	}
	return nil
}
