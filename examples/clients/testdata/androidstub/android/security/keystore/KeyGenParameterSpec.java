// Compile-only stub of the Android API (see ../../../README.md).
package android.security.keystore;

import java.security.spec.AlgorithmParameterSpec;

public final class KeyGenParameterSpec implements AlgorithmParameterSpec {
    private KeyGenParameterSpec() {}

    public static final class Builder {
        public Builder(String keystoreAlias, int purposes) {
            throw new UnsupportedOperationException("compile-only stub");
        }

        public Builder setAlgorithmParameterSpec(AlgorithmParameterSpec spec) {
            throw new UnsupportedOperationException("compile-only stub");
        }

        public Builder setDigests(String... digests) {
            throw new UnsupportedOperationException("compile-only stub");
        }

        public Builder setAttestationChallenge(byte[] attestationChallenge) {
            throw new UnsupportedOperationException("compile-only stub");
        }

        public KeyGenParameterSpec build() {
            throw new UnsupportedOperationException("compile-only stub");
        }
    }
}
