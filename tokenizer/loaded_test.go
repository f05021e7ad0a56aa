package tokenizer_test

import (
	"context"
	"slices"
	"testing"

	"github.com/jeton-dev/jeton/tokenizer"
	"github.com/jeton-dev/jeton/tokenizer/localkeys"
	"github.com/jeton-dev/jeton/tokenizer/memstore"
)

// LoadedTenants names the tenants whose keys this process holds: none
// before a call, then those it has served; the service's own keys are no
// tenant.
func TestLoadedTenants(t *testing.T) {
	km, err := localkeys.New(true)
	if err != nil {
		t.Fatal(err)
	}
	tz, err := tokenizer.New(tokenizer.Config{Classes: tokenizer.DefaultClasses(), Keys: km, Store: memstore.New()})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if got := tz.LoadedTenants(); len(got) != 0 {
		t.Fatalf("before any call: %q", got)
	}
	if _, err := tz.DeriveKey(ctx, "audit"); err != nil {
		t.Fatal(err)
	}
	for _, tenant := range []string{"zeta", "alpha"} {
		if _, err := tz.Tokenize(ctx, tenant, []tokenizer.Item{{Class: "name", Value: "Loaded Testperson"}}, ""); err != nil {
			t.Fatal(err)
		}
	}
	if got := tz.LoadedTenants(); !slices.Equal(got, []string{"alpha", "zeta"}) {
		t.Fatalf("LoadedTenants = %q, want [alpha zeta]", got)
	}
}
