import java.io.FileInputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.Key;
import java.security.KeyStore;
import java.util.Collections;

/**
 * Opens a PKCS#12 file the way MccClient (and an Android app) does, and
 * reads the private key out of it: exit 0 when both work. The compatibility
 * test in clients_test runs it with `java OpenBundle.java FILE PASSWORDFILE`.
 */
public final class OpenBundle {
    public static void main(String[] args) throws Exception {
        char[] password = Files.readString(Path.of(args[1])).toCharArray();
        KeyStore ks = KeyStore.getInstance("PKCS12");
        try (FileInputStream in = new FileInputStream(args[0])) {
            ks.load(in, password);
        }
        for (String alias : Collections.list(ks.aliases())) {
            if (ks.isKeyEntry(alias)) {
                Key key = ks.getKey(alias, password);
                if (key != null) {
                    return;
                }
            }
        }
        throw new IllegalStateException("no private key in " + args[0]);
    }
}
