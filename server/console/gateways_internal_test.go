package console

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/mccgate/mcc/xds/serve"
)

// TestXDSViewStates: a node is SYNCED only when it ACKed every type its
// group serves at the version served; one older version makes it STALE;
// no ACK of a type is NOT SENT; a node of no group is said so.
func TestXDSViewStates(t *testing.T) {
	served := map[string]string{"listener": "l2", "route": "r2", "cluster": "c1"}
	st := serve.Status{
		Groups: []serve.GroupStatus{{Cluster: "edge", Versions: served}},
		Nodes: []serve.NodeStatus{
			{ID: "synced", Cluster: "edge", Acked: map[string]string{"listener": "l2", "route": "r2", "cluster": "c1"}},
			{ID: "stale", Cluster: "edge", Acked: map[string]string{"listener": "l1", "route": "r2", "cluster": "c1"}},
			{ID: "not-sent", Cluster: "edge", Acked: map[string]string{"listener": "l2"}},
			{ID: "lost", Cluster: "other", UnknownCluster: true, Acked: map[string]string{}},
			{ID: "nacked", Cluster: "edge", Acked: served, LastNACK: &serve.NACK{Type: "route", Version: "r3", Message: "no", Time: time.Unix(1, 0)}},
		},
	}
	v := xdsViewOf(xdsView{}, decodeServeStatus(t, st))
	want := map[string]string{"synced": "SYNCED", "stale": "STALE", "not-sent": "NOT SENT", "lost": "NO GROUP", "nacked": "SYNCED"}
	for _, n := range v.Nodes {
		if n.State != want[n.ID] {
			t.Errorf("%s: %s, want %s", n.ID, n.State, want[n.ID])
		}
		if n.ID == "stale" && (n.Types[0].Type != "listener" || n.Types[0].State != "STALE" || n.Types[0].Acked != "l1") {
			t.Errorf("stale node's listener: %+v", n.Types[0])
		}
		if n.ID == "nacked" && (n.NACK == nil || n.NACKTime == "") {
			t.Errorf("the NACK is not carried: %+v", n)
		}
	}
	if v.Current != 2 || v.Total != 5 {
		t.Errorf("%d of %d current, want 2 of 5", v.Current, v.Total)
	}
}

// decodeServeStatus sends st through JSON as mcc xds's /status does and
// decodes it as the gateways view does.
func decodeServeStatus(t *testing.T, st serve.Status) xdsStatus {
	t.Helper()
	b, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	var out xdsStatus
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestXDSStatusDecodesServeStatus holds the view's copy of the /status
// fields to xds/serve's: every field the view reads comes through JSON
// with its value, so a renamed tag on either side fails here.
func TestXDSStatusDecodesServeStatus(t *testing.T) {
	at := time.Date(2026, 12, 6, 1, 2, 3, 0, time.UTC)
	st := serve.Status{
		Config: serve.ConfigStatus{Version: "cfg", LoadedAt: at, LastLoadError: "bad", LastLoadErrorAt: at, Warnings: []string{"w"}},
		Groups: []serve.GroupStatus{{Cluster: "edge", Version: "snap", PublishedAt: at, Versions: map[string]string{"listener": "l"},
			LastACKedVersion: "acked", RolledBackFrom: "rb", Rejected: map[string]string{"listener x": "m"}}},
		Nodes: []serve.NodeStatus{{ID: "n", Cluster: "edge", Connected: true, Protocol: "delta", UnknownCluster: true,
			Acked: map[string]string{"listener": "l"}, LastNACK: &serve.NACK{Type: "route", Version: "r", Message: "m", Time: at}, LastSeen: at}},
	}
	got := decodeServeStatus(t, st)
	// Every field of the copy holds a non-zero value: none was missed.
	var check func(path string, v reflect.Value)
	check = func(path string, v reflect.Value) {
		switch v.Kind() {
		case reflect.Struct:
			if v.Type() == reflect.TypeOf(time.Time{}) {
				if !v.Interface().(time.Time).Equal(at) {
					t.Errorf("%s = %v", path, v.Interface())
				}
				return
			}
			for i := 0; i < v.NumField(); i++ {
				check(path+"."+v.Type().Field(i).Name, v.Field(i))
			}
		case reflect.Slice:
			if v.Len() == 0 {
				t.Errorf("%s is empty", path)
			}
			for i := 0; i < v.Len(); i++ {
				check(path, v.Index(i))
			}
		case reflect.Pointer:
			if v.IsNil() {
				t.Errorf("%s is nil", path)
				return
			}
			check(path, v.Elem())
		default:
			if v.IsZero() {
				t.Errorf("%s did not come through", path)
			}
		}
	}
	check("status", reflect.ValueOf(got))
}
