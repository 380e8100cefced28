// Compile-only stub of the Android API (see ../../README.md).
package android.content;

public interface SharedPreferences {
    String getString(String key, String defValue);

    Editor edit();

    interface Editor {
        Editor putString(String key, String value);

        Editor clear();

        boolean commit();
    }
}
