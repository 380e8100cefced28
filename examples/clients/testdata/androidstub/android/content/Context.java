// Compile-only stub of the Android API (see ../../README.md).
package android.content;

public abstract class Context {
    public static final int MODE_PRIVATE = 0;

    public abstract SharedPreferences getSharedPreferences(String name, int mode);
}
