package budget

import (
	"strconv"
	"testing"
)

// TestMemo: a memo calls f once per key it holds, and holds at most
// maxClear keys, so that callers naming ever new identities cannot grow
// it without bound.
func TestMemo(t *testing.T) {
	var m memo[string]
	calls := 0
	f := func(k string) string { calls++; return "v:" + k }
	if got := m.get("a", f); got != "v:a" || calls != 1 {
		t.Fatalf("first get: %q after %d calls", got, calls)
	}
	if got := m.get("a", f); got != "v:a" || calls != 1 {
		t.Fatalf("second get: %q after %d calls, want f called once", got, calls)
	}
	for i := range 3 * maxClear {
		if got := m.get(strconv.Itoa(i), f); got != "v:"+strconv.Itoa(i) {
			t.Fatalf("get(%d) = %q", i, got)
		}
		if len(m.m) > maxClear {
			t.Fatalf("memo holds %d keys, want at most %d", len(m.m), maxClear)
		}
	}
}
