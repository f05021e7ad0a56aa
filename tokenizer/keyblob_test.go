package tokenizer

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"os"
	"testing"
	"time"
)

// TestKeyBlobKnownAnswers pins the stored formats of wrapped keys, destroyed
// markers and the current-generation pointer: a change that would strand
// keys already in Redis fails here.
func TestKeyBlobKnownAnswers(t *testing.T) {
	raw, err := os.ReadFile("testdata/keyblobs.json")
	if err != nil {
		t.Fatal(err)
	}
	var kat struct {
		KeyBlobs []struct {
			Name        string `json:"name"`
			Blob        string `json:"blob"`
			Version     byte   `json:"version"`
			CreatedUnix int64  `json:"created_unix"`
			KEK         string `json:"kek"`
			Wrapped     string `json:"wrapped"`
		} `json:"key_blobs"`
		Marker struct {
			Blob          string `json:"blob"`
			DestroyedUnix int64  `json:"destroyed_unix"`
		} `json:"destroyed_marker"`
		Current struct {
			Blob       string `json:"blob"`
			Generation uint32 `json:"generation"`
		} `json:"current"`
	}
	if err := json.Unmarshal(raw, &kat); err != nil {
		t.Fatal(err)
	}
	unhex := func(tb testing.TB, s string) []byte {
		tb.Helper()
		b, err := hex.DecodeString(s)
		if err != nil {
			tb.Fatal(err)
		}
		return b
	}
	if len(kat.KeyBlobs) == 0 {
		t.Fatal("no key blob vectors")
	}
	for _, tc := range kat.KeyBlobs {
		t.Run(tc.Name, func(t *testing.T) {
			blob := unhex(t, tc.Blob)
			got, err := parseKeyBlob(blob)
			if err != nil {
				t.Fatalf("parseKeyBlob: %v", err)
			}
			var created time.Time
			if tc.CreatedUnix != 0 {
				created = time.Unix(tc.CreatedUnix, 0).UTC()
			}
			if got.version != tc.Version || !got.created.Equal(created) || got.kek != tc.KEK || string(got.wrapped) != tc.Wrapped {
				t.Errorf("parseKeyBlob = v%d %v %q %q; want v%d %v %q %q",
					got.version, got.created, got.kek, got.wrapped, tc.Version, created, tc.KEK, tc.Wrapped)
			}
			if enc := got.encode(); !bytes.Equal(enc, blob) {
				t.Errorf("encode = %x, want %x", enc, blob)
			}
			if tc.Version == keyBlobVersion2 {
				if enc := newKeyBlob(created, tc.KEK, []byte(tc.Wrapped)).encode(); !bytes.Equal(enc, blob) {
					t.Errorf("newKeyBlob(...).encode = %x, want %x", enc, blob)
				}
			}
		})
	}
	if got := markerBlob(time.Unix(kat.Marker.DestroyedUnix, 0)); !bytes.Equal(got, unhex(t, kat.Marker.Blob)) {
		t.Errorf("markerBlob = %x, want %s", got, kat.Marker.Blob)
	}
	if got := parseMarker(unhex(t, kat.Marker.Blob)); got.Unix() != kat.Marker.DestroyedUnix {
		t.Errorf("parseMarker = %v, want Unix %d", got, kat.Marker.DestroyedUnix)
	}
	if got := currentBlob(kat.Current.Generation); !bytes.Equal(got, unhex(t, kat.Current.Blob)) {
		t.Errorf("currentBlob = %x, want %s", got, kat.Current.Blob)
	}
}

func TestParseKeyBlobRejectsMalformed(t *testing.T) {
	for _, b := range [][]byte{
		nil, {}, {1}, {2}, {3, 1, 2, 3},
		{2, 0, 0, 0, 0, 0, 0, 0, 1},                   // no KEK length
		{2, 0, 0, 0, 0, 0, 0, 0, 1, 0},                // no wrapped key
		{2, 0, 0, 0, 0, 0, 0, 0, 1, 5, 'a', 'b', 'c'}, // KEK name cut short
		{2, 0, 0, 0, 0, 0, 0, 0, 1, 3, 'a', 'b', 'c'}, // KEK but no wrapped key
	} {
		if _, err := parseKeyBlob(b); err == nil {
			t.Errorf("parseKeyBlob(%x) accepted", b)
		}
	}
}
