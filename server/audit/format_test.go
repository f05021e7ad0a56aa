package audit

import (
	"bytes"
	"testing"
)

// FuzzParseLine: parseLine never panics, and accepts exactly the lines
// appendLine writes.
func FuzzParseLine(f *testing.F) {
	var prev, sum [hashSize]byte
	sum[0] = 1
	f.Add(bytes.TrimSuffix(appendLine(nil, 1, &prev, &sum, []byte(`{"a":1}`)), []byte("\n")))
	f.Add([]byte(`{"v":2,"seq":18446744073709551615,"prev":"00","rec":{},"hash":"00"}`))
	f.Add([]byte(`{"v":2,"seq":99999999999999999999999,"prev":"`))
	f.Add([]byte(`{"v":1,"seq":1}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		l, why := parseLine(b)
		if why != "" {
			return
		}
		again := appendLine(nil, l.seq, &l.prev, &l.hash, l.rec)
		if !bytes.Equal(again[:len(again)-1], b) {
			t.Fatalf("parseLine accepted a line appendLine would not write: %q", b)
		}
	})
}
