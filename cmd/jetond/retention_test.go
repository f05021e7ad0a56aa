package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// retention_until reaches the class as an absolute end of retention, as a
// date or a full timestamp.
func TestClassRetentionUntil(t *testing.T) {
	b, err := os.ReadFile("jetond.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cfg := strings.Replace(string(b),
		"- {name: name, kind: random, normalize: [nfc, trim, collapse-space], mask: initials, max_len: 256, retention: 4380h}",
		"- {name: name, kind: random, normalize: [nfc, trim, collapse-space], mask: initials, max_len: 256, retention: 4380h, retention_until: 2031-03-31}\n"+
			"  - {name: note, retention_until: \"2031-03-31T18:00:00Z\"}", 1)
	if cfg == string(b) {
		t.Fatal("the example config no longer has the name class this test edits")
	}
	path := filepath.Join(t.TempDir(), "jetond.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"JETON_REDIS_ADDRS": "127.0.0.1:1"}
	c, err := LoadConfig(path, func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	classes, err := c.classes()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]time.Time{
		"name":  time.Date(2031, 3, 31, 0, 0, 0, 0, time.UTC),
		"note":  time.Date(2031, 3, 31, 18, 0, 0, 0, time.UTC),
		"email": {},
	}
	seen := 0
	for _, cl := range classes {
		if w, ok := want[cl.Name]; ok {
			seen++
			if !cl.RetainUntil.Equal(w) {
				t.Errorf("class %s: RetainUntil %v; want %v", cl.Name, cl.RetainUntil, w)
			}
		}
	}
	if seen != len(want) {
		t.Errorf("found %d of the classes %v", seen, want)
	}
}
