package gateway_test

import (
	"testing"

	"github.com/mccgate/mcc/xds/gateway"
)

func TestServerNames(t *testing.T) {
	m, err := gateway.NewServerNames(map[string]string{
		"api.bank.example":  "bank",
		"*.shop.example":    "shop",
		"*.eu.shop.example": "shop-eu",
		"Mixed.Example.":    "mixed",
	})
	if err != nil {
		t.Fatal(err)
	}
	for sni, want := range map[string]string{
		"api.bank.example":    "bank",
		"API.bank.example":    "bank",
		"api.bank.example.":   "bank",
		"a.eu.shop.example":   "shop-eu", // the most specific wildcard
		"a.shop.example":      "shop",
		"a.b.shop.example":    "shop",
		"mixed.example":       "mixed",
		"shop.example":        "", // a wildcard needs a label
		"other.example":       "",
		"":                    "",
		"x.api.bank.example":  "", // an exact name is no wildcard
		"evil-shop.example":   "",
		"a.shop.example.evil": "",
	} {
		got, ok := m.Match(sni)
		if got != want || ok != (want != "") {
			t.Errorf("Match(%q) = %q, %v; want %q", sni, got, ok, want)
		}
	}
	var none *gateway.ServerNames
	if _, ok := none.Match("a.example"); ok {
		t.Error("nil matcher matched")
	}
	for _, bad := range []map[string]string{
		{"a*.example": "x"}, {"*": "x"}, {"*.": "x"}, {"a.*.example": "x"},
		{"ok.example": ""}, {"10.0.0.1": "x"}, {"host:443": "x"}, {"": "x"},
	} {
		if _, err := gateway.NewServerNames(bad); err == nil {
			t.Errorf("names %v accepted", bad)
		}
	}
}
