package xds_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/mccgate/mcc/xds"
	"github.com/mccgate/mcc/xds/xdstest"
)

// The gateway section may come first; problems after it keep their lines
// (one load through fusion: the section is decoded from fusion's parse).
func TestGatewayFirstKeepsFusionLineNumbers(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir)
	gw := setFile[strings.Index(setFile, "gateway:"):]
	sets := setFile[:strings.Index(setFile, "gateway:")]
	reordered := gw + sets
	path := xdstest.WriteFile(t, dir, "fusion-sets.yaml", []byte(reordered))
	if _, err := xds.Load(path); err != nil {
		t.Fatalf("gateway first: %v", err)
	}
	// mode: detection of app-b, broken; count its line in the reordered file.
	line := 0
	for i, l := range strings.Split(reordered, "\n") {
		if strings.Contains(l, "mode: detection") {
			line = i + 1
		}
	}
	path = xdstest.WriteFile(t, dir, "fusion-sets.yaml", []byte(strings.Replace(reordered, "mode: detection", "mode: audit", 1)))
	_, err := xds.Load(path)
	want := fmt.Sprintf("fusion-sets.yaml:%d: fusion_sets[1].mode", line)
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("err = %v, want %s", err, want)
	}
	// A gateway problem is reported with its own line too.
	path = xdstest.WriteFile(t, dir, "fusion-sets.yaml", []byte(strings.Replace(reordered, "port: 8443", "port: -1", 1)))
	if _, err := xds.Load(path); err == nil || !strings.Contains(err.Error(), "fusion-sets.yaml:6: gateway.listeners[0].port") {
		t.Fatalf("err = %v", err)
	}
}
