// Package browsertest drives Debian's headless Chromium from Go tests
// (chromedp): the console's views are tested in a real browser.
package browsertest

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// ChromiumPath is Debian's chromium (scripts/test.sh installs it).
const ChromiumPath = "/usr/bin/chromium"

// ScreenshotDir is where the browser test saves a PNG of each view:
// $MCC_CONSOLE_SCREENSHOTS when set, else the test's temporary directory.
func ScreenshotDir(t *testing.T) string {
	if d := os.Getenv("MCC_CONSOLE_SCREENSHOTS"); d != "" {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		return d
	}
	return t.TempDir()
}

// Start starts headless Chromium with a fresh profile, the
// machine's network closed to it (no background or component traffic).
func Start(t *testing.T) context.Context {
	t.Helper()
	if _, err := os.Stat(ChromiumPath); err != nil {
		t.Fatalf("chromium is needed for the console's browser tests (apt-get install chromium): %v", err)
	}
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(ChromiumPath),
		chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		// The test server's certificate is made at test time; nothing
		// else is fetched.
		chromedp.IgnoreCertErrors,
		chromedp.WindowSize(1280, 900),
		chromedp.UserDataDir(t.TempDir()),
	)
	ctx, cancel := chromedp.NewContext(alloc)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	// Launch the browser now, on ctx: launched by a caller's first action
	// under a shorter context, it would end with that context.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("starting chromium: %v", err)
	}
	return ctx
}

// WaitFor polls a JavaScript condition until it holds or the deadline
// passes.
func WaitFor(t *testing.T, ctx context.Context, cond string, within time.Duration, what string) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		ok, err := chromedp.Run(sctx, chromedp.Evaluate[bool](cond))
		cancel()
		if err != nil {
			t.Fatalf("waiting for %s: %v", what, err)
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("waited %v for %s", within, what)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// TabReachesAll presses Tab through the page and checks that every
// action (link, button, visible input, summary) took the focus.
func TabReachesAll(t *testing.T, ctx context.Context, view string) {
	t.Helper()
	const actions = `a[href], button, input:not([type=hidden]), summary`
	sctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	n, err := chromedp.Run(sctx, chromedp.Evaluate[int](`(function () {
		var all = document.querySelectorAll("`+actions+`");
		all.forEach(function (el, i) { el.setAttribute("data-tab-index", String(i)); });
		document.activeElement && document.activeElement.blur();
		window.__reached = new Set();
		document.addEventListener("focusin", function (e) {
			var i = e.target.getAttribute && e.target.getAttribute("data-tab-index");
			if (i !== null) { window.__reached.add(i); }
		});
		return all.length;
	})()`))
	if err != nil {
		t.Fatal(err)
	}
	if n == 0 {
		t.Fatalf("%s: no actions found", view)
	}
	for i := 0; i < n+5; i++ {
		if err := chromedp.Do(sctx, chromedp.KeyEvent("\t")); err != nil {
			t.Fatal(err)
		}
	}
	missing, err := chromedp.Run(sctx, chromedp.Evaluate[[]string](`Array.from(document.querySelectorAll("`+actions+`")).
		filter(function (el) { return !window.__reached.has(el.getAttribute("data-tab-index")); }).
		map(function (el) { return el.outerHTML.slice(0, 120); })`))
	if err != nil {
		t.Fatal(err)
	}
	if len(missing) > 0 {
		t.Fatalf("%s: Tab did not reach %d of %d actions: %q", view, len(missing), n, missing)
	}
}

// stepTimeout bounds one Do, Eval or Shot: the machine may be loaded.
const stepTimeout = 30 * time.Second

// Do runs steps in the browser, failing the test on an error.
func Do(t *testing.T, ctx context.Context, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	sctx, cancel := context.WithTimeout(ctx, stepTimeout)
	defer cancel()
	if err := chromedp.Do(sctx, steps...); err != nil {
		t.Fatal(err)
	}
}

// Eval evaluates a JavaScript expression that yields a string.
func Eval(t *testing.T, ctx context.Context, js string) string {
	t.Helper()
	sctx, cancel := context.WithTimeout(ctx, stepTimeout)
	defer cancel()
	v, err := chromedp.Run(sctx, chromedp.Evaluate[string](js))
	if err != nil {
		t.Fatalf("%s: %v", js, err)
	}
	return v
}

// Shot saves a screenshot of the whole page as dir/name.png.
func Shot(t *testing.T, ctx context.Context, dir, name string) {
	t.Helper()
	sctx, cancel := context.WithTimeout(ctx, stepTimeout)
	defer cancel()
	png, err := chromedp.Run(sctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644); err != nil {
		t.Fatal(err)
	}
}

// Console collects the page console's messages (and exceptions) from now
// until the test ends; the function returns those collected so far.
func Console(t *testing.T, ctx context.Context) func() []chromedp.ConsoleMessage {
	msgCtx, stop := context.WithCancel(ctx)
	t.Cleanup(stop)
	var mu sync.Mutex
	var messages []chromedp.ConsoleMessage
	stream := chromedp.Console(msgCtx)
	go func() {
		for m, err := range stream {
			if err != nil {
				return
			}
			mu.Lock()
			messages = append(messages, m)
			mu.Unlock()
		}
	}()
	return func() []chromedp.ConsoleMessage {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(messages)
	}
}
