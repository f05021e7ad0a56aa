package tokenizer

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"os"
	"strconv"
	"testing"
	"time"
)

// TestKeyBlobKnownAnswers pins the stored formats of wrapped keys, destroyed
// markers and the current-generation pointer: a change that would strand
// keys already in Redis fails here. Versions 1 to 3 are only read; every
// blob written is version 4.
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
	seen := map[byte]bool{}
	for _, tc := range kat.KeyBlobs {
		t.Run(tc.Name, func(t *testing.T) {
			blob := unhex(t, tc.Blob)
			got, err := parseKeyBlob(blob)
			if err != nil {
				t.Fatalf("parseKeyBlob: %v", err)
			}
			seen[got.version] = true
			var created time.Time
			if tc.CreatedUnix != 0 {
				created = time.Unix(tc.CreatedUnix, 0).UTC()
			}
			if got.version != tc.Version || !got.created.Equal(created) || string(got.wrapped) != tc.Wrapped {
				t.Errorf("parseKeyBlob = v%d %v %q; want v%d %v %q",
					got.version, got.created, got.wrapped, tc.Version, created, tc.Wrapped)
			}
			if got.bound() != (tc.Version >= keyBlobVersion3) || got.createdBound() != (tc.Version == keyBlobVersion4) {
				t.Errorf("bound = %t, createdBound = %t for version %d", got.bound(), got.createdBound(), tc.Version)
			}
			if tc.Version == keyBlobVersion4 {
				if enc := newKeyBlob(created, []byte(tc.Wrapped)).encode(); !bytes.Equal(enc, blob) {
					t.Errorf("newKeyBlob(...).encode = %x, want %x", enc, blob)
				}
			} else if enc := got.encode(); enc[0] != keyBlobVersion4 {
				t.Errorf("re-encoding a version %d blob wrote version %d; every blob written is version 4", tc.Version, enc[0])
			}
		})
	}
	for _, v := range []byte{keyBlobVersion1, keyBlobVersion2, keyBlobVersion3, keyBlobVersion4} {
		if !seen[v] {
			t.Errorf("no vector for key blob version %d", v)
		}
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
		nil, {}, {1}, {2}, {3}, {4, 1, 2, 3},
		{2, 0, 0, 0, 0, 0, 0, 0, 1},                   // no KEK length
		{2, 0, 0, 0, 0, 0, 0, 0, 1, 0},                // no wrapped key
		{2, 0, 0, 0, 0, 0, 0, 0, 1, 5, 'a', 'b', 'c'}, // KEK name cut short
		{2, 0, 0, 0, 0, 0, 0, 0, 1, 3, 'a', 'b', 'c'}, // KEK but no wrapped key
		{3, 0, 0, 0, 0, 0, 0, 0, 1},                   // no wrapped key
	} {
		if _, err := parseKeyBlob(b); err == nil {
			t.Errorf("parseKeyBlob(%x) accepted", b)
		}
	}
}

// TestKeyIdentityKnownAnswers pins the one function that maps (tenant,
// generation, purpose) to a KEK name, the associated data of the wrapped
// blob and the store name: a change would strand every stored key, and a
// variant that leaves the tenant, generation or purpose out of the binding
// fails here.
func TestKeyIdentityKnownAnswers(t *testing.T) {
	raw, err := os.ReadFile("testdata/keyids.json")
	if err != nil {
		t.Fatal(err)
	}
	var kat struct {
		Identities []struct {
			Tenant     string `json:"tenant"`
			Generation uint32 `json:"generation"`
			Purpose    string `json:"purpose"`
			KEK        string `json:"kek"`
			ADv3       string `json:"ad_v3"`
			Created    int64  `json:"created_unix"`
			ADv4       string `json:"ad_v4"`
			StoreName  string `json:"store_name"`
		} `json:"identities"`
		Rejects []string `json:"generation_kek_rejects"`
	}
	if err := json.Unmarshal(raw, &kat); err != nil {
		t.Fatal(err)
	}
	if len(kat.Identities) == 0 || len(kat.Rejects) == 0 {
		t.Fatal("no vectors")
	}
	ads := map[string]string{} // associated data -> the identity and time it binds
	for _, tc := range kat.Identities {
		var id keyID
		switch tc.Purpose {
		case "root":
			id = rootKeyID(tc.Tenant)
		case "dek":
			id = dekKeyID(tc.Tenant, tc.Generation)
		default:
			t.Fatalf("unknown purpose %q", tc.Purpose)
		}
		if id.gen != tc.Generation {
			t.Fatalf("%s: generation %d, vector says %d", id, id.gen, tc.Generation)
		}
		if got := id.kek(); got != tc.KEK {
			t.Errorf("%s: kek = %q, want %q", id, got, tc.KEK)
		}
		var created time.Time
		if tc.Created != 0 {
			created = time.Unix(tc.Created, 0)
		}
		if got := hex.EncodeToString(id.ad(created)); got != tc.ADv4 {
			t.Errorf("%s: ad(%d) = %s, want %s", id, tc.Created, got, tc.ADv4)
		}
		if got := hex.EncodeToString(id.adV3()); got != tc.ADv3 {
			t.Errorf("%s: adV3 = %s, want %s", id, got, tc.ADv3)
		}
		if got := id.storeName(); got != tc.StoreName {
			t.Errorf("%s: store name = %q, want %q", id, got, tc.StoreName)
		}
		for ad, bound := range map[string]string{tc.ADv3: id.String(), tc.ADv4: id.String() + " " + strconv.FormatInt(tc.Created, 10)} {
			if prev, seen := ads[ad]; seen && prev != bound {
				t.Errorf("%s: associated data shared with %s", bound, prev)
			}
			ads[ad] = bound
		}
		if tc.Purpose == "dek" {
			tn, g, ok := ParseGenerationKEK(tc.KEK)
			if !ok || tn != tc.Tenant || g != tc.Generation {
				t.Errorf("ParseGenerationKEK(%q) = %q, %d, %t", tc.KEK, tn, g, ok)
			}
		}
		// Every blob version opens under a computed KEK: the bound ones
		// with the identity's associated data (and, in version 4, the
		// blob's creation time), the legacy ones without.
		for _, v := range []struct {
			version byte
			kek     string
			ad      string
		}{{keyBlobVersion1, "", ""}, {keyBlobVersion2, tc.KEK, ""}, {keyBlobVersion3, tc.KEK, tc.ADv3}, {keyBlobVersion4, tc.KEK, tc.ADv4}} {
			kek, ad := id.opener(keyBlob{version: v.version, created: created})
			if kek != v.kek || (ad == nil) != (v.ad == "") || hex.EncodeToString(ad) != v.ad {
				t.Errorf("%s: opener(v%d) = %q, %x", id, v.version, kek, ad)
			}
		}
	}
	for _, name := range kat.Rejects {
		if tn, g, ok := ParseGenerationKEK(name); ok {
			t.Errorf("ParseGenerationKEK(%q) = %q, %d, accepted", name, tn, g)
		}
	}
}
