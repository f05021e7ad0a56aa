package audit

import (
	"testing"
	"time"
)

// TestAdvances pins the rule that keeps the anchor moving forward.
func TestAdvances(t *testing.T) {
	const chainA, chainB = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
	stored := &Checkpoint{Replica: "r", Chain: chainA, Seq: 10, Head: [hashSize]byte{1}}
	signed := []byte("signed checkpoint of chain a\n")
	cp := func(chain string, seq uint64, head byte) Checkpoint {
		return Checkpoint{Replica: "r", Chain: chain, Seq: seq, Head: [hashSize]byte{head}}
	}
	tests := []struct {
		name  string
		prev  *Checkpoint
		next  Checkpoint
		start *ChainStart
		ok    bool
	}{
		{"nothing stored", nil, cp(chainA, 1, 9), nil, true},
		{"forward", stored, cp(chainA, 11, 2), nil, true},
		{"same head again", stored, cp(chainA, 10, 1), nil, true},
		{"older", stored, cp(chainA, 9, 1), nil, false},
		{"same seq, other head", stored, cp(chainA, 10, 2), nil, false},
		{"other replica", stored, Checkpoint{Replica: "s", Chain: chainA, Seq: 11}, nil, false},
		{"other chain", stored, cp(chainB, 1, 3), &ChainStart{ID: chainB}, false},
		{"other chain naming another checkpoint", stored, cp(chainB, 1, 3), &ChainStart{ID: chainB, Previous: "something else\n"}, false},
		{"new chain naming it", stored, cp(chainB, 1, 3), &ChainStart{ID: chainB, Previous: string(signed)}, true},
		{"closed, then past it", closed(stored), cp(chainA, 11, 2), nil, false},
		{"closed, then reopened at its seq", closed(stored), cp(chainA, 10, 1), nil, true},
		{"closed, then closed again", closed(stored), closedCP(cp(chainA, 10, 1)), nil, true},
		{"closed, then a new chain naming it", closed(stored), cp(chainB, 1, 3), &ChainStart{ID: chainB, Previous: string(signed)}, true},
		{"recovered after the open checkpoint it names", stored, recovered(cp(chainA, 14, 2), 10, 13), nil, true},
		{"recovered naming another checkpoint", stored, recovered(cp(chainA, 14, 2), 9, 13), nil, false},
		{"recovered after a closed checkpoint", closed(stored), recovered(cp(chainA, 14, 2), 10, 13), nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := advances(tt.prev, signed, tt.next, tt.start)
			if (err == nil) != tt.ok {
				t.Fatalf("advances = %v, want ok %v", err, tt.ok)
			}
		})
	}
}

func closed(c *Checkpoint) *Checkpoint {
	d := *c
	d.Closed = true
	return &d
}

func closedCP(c Checkpoint) Checkpoint { return *closed(&c) }

func recovered(c Checkpoint, anchored, head uint64) Checkpoint {
	c.Recovered = &Recovery{Anchored: anchored, Head: head}
	return c
}

// TestCheckpointText pins the extension lines and refuses any other form.
func TestCheckpointText(t *testing.T) {
	base := Checkpoint{Replica: "r-0", Chain: "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", Seq: 12, Head: [hashSize]byte{7},
		Time: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	head := "jeton-audit/r-0\n12\nBwAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\nchain aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\ntime 2026-01-02T03:04:05Z\n"
	for _, tt := range []struct {
		name string
		c    Checkpoint
		text string
	}{
		{"open", base, head},
		{"closed", closedCP(base), head + "closed\n"},
		{"recovered", recovered(base, 3, 11), head + "recovered 3 11\n"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.c.body(); got != tt.text {
				t.Fatalf("body = %q, want %q", got, tt.text)
			}
			got, err := parseBody(tt.text)
			if err != nil || got.body() != tt.text || got.Closed != tt.c.Closed || (got.Recovered == nil) != (tt.c.Recovered == nil) {
				t.Fatalf("parseBody = %+v, %v", got, err)
			}
		})
	}
	for _, bad := range []string{
		head + "closed \n",
		head + "open\n",
		head + "closed\nclosed\n",
		head + "recovered 11 3\n",  // anchored after head
		head + "recovered 3 12\n",  // head not before the recovery record
		head + "recovered 3 11 \n", // not canonical
		head + "recovered 03 11\n",
	} {
		if _, err := parseBody(bad); err == nil {
			t.Errorf("parseBody accepted %q", bad)
		}
	}
}
