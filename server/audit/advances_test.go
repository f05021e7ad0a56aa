package audit

import "testing"

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
