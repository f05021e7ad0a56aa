package tokenizer

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"os"
	"strings"
	"testing"
)

type keyedVectors struct {
	DEK           string `json:"dek"`
	Root          string `json:"root"`
	Deterministic []struct {
		Class   string `json:"class"`
		Tenant  string `json:"tenant"`
		Value   string `json:"value"`
		Payload string `json:"payload"`
		Token   string `json:"token"`
	} `json:"deterministic"`
	RecordNames []struct {
		Tenant     string `json:"tenant"`
		Token      string `json:"token"`
		RecordName string `json:"record_name"`
	} `json:"record_names"`
}

func loadKeyedVectors(t *testing.T) (kat keyedVectors, dek, root []byte) {
	t.Helper()
	raw, err := os.ReadFile("testdata/keyed.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &kat); err != nil {
		t.Fatal(err)
	}
	if dek, err = hex.DecodeString(kat.DEK); err != nil || len(dek) != 32 {
		t.Fatalf("dek: %v", err)
	}
	if root, err = hex.DecodeString(kat.Root); err != nil || len(root) != 32 {
		t.Fatalf("root: %v", err)
	}
	if len(kat.Deterministic) == 0 || len(kat.RecordNames) == 0 {
		t.Fatal("no vectors")
	}
	return kat, dek, root
}

// TestDeterministicTokenKnownAnswers pins the deterministic token MAC under
// a fixed generation DEK. The vectors were computed outside Go: an
// unkeyed hash of the value, a key not derived from the generation's DEK,
// or a reordered input gives other tokens and fails here.
func TestDeterministicTokenKnownAnswers(t *testing.T) {
	kat, dek, _ := loadKeyedVectors(t)
	gk := newGenKeys(7, dek, keyBlob{})
	for _, v := range kat.Deterministic {
		p := deterministicPayload(gk.det, v.Class, v.Value)
		if got := hex.EncodeToString(p[:]); got != v.Payload {
			t.Errorf("%s/%s: payload %s, want %s", v.Tenant, v.Class, got, v.Payload)
		}
		tok := Token{Class: v.Class, Tenant: v.Tenant, Version: tokenVersion1, Payload: p}
		if got := tok.String(); got != v.Token {
			t.Errorf("%s/%s: token %s, want %s", v.Tenant, v.Class, got, v.Token)
		}
		// The vectors themselves tell a keyed MAC from an unkeyed hash.
		plain := sha256.Sum256([]byte(v.Class + "\x00" + v.Value))
		if hex.EncodeToString(plain[:16]) == v.Payload {
			t.Fatalf("%s/%s: the vector is an unkeyed SHA-256", v.Tenant, v.Class)
		}
	}
	// Another generation's key gives another token for the same value:
	// tokens are per generation, and die with it.
	other := append([]byte(nil), dek...)
	other[0] ^= 1
	v := kat.Deterministic[0]
	if deterministicPayload(newGenKeys(8, other, keyBlob{}).det, v.Class, v.Value) == deterministicPayload(gk.det, v.Class, v.Value) {
		t.Error("two generations' DEKs give the same deterministic token")
	}
	// The deterministic key is not the DEK, nor the key of any record.
	if string(gk.det.expand32(nil, "x")) == string(gk.dek.expand32(nil, "x")) {
		t.Error("the deterministic key is the DEK")
	}
}

// TestRecordNameKnownAnswers pins the keyed names of records under a fixed
// tenant root key (vectors computed outside Go): an unkeyed hash of the
// token, or a name without the tenant's index key, fails here.
func TestRecordNameKnownAnswers(t *testing.T) {
	kat, _, root := loadKeyedVectors(t)
	for _, v := range kat.RecordNames {
		tk := newTenantKeys(v.Tenant, root)
		if got := recordName(tk, v.Token); got != v.RecordName {
			t.Errorf("recordName(%s) = %s, want %s", v.Token, got, v.RecordName)
		}
		plain := sha256.Sum256([]byte("record\x00" + v.Token))
		if strings.HasSuffix(v.RecordName, base64.RawURLEncoding.EncodeToString(plain[:20])) {
			t.Fatalf("the vector for %s is an unkeyed SHA-256", v.Token)
		}
	}
	// Another root key names the same token elsewhere.
	other := append([]byte(nil), root...)
	other[31] ^= 1
	v := kat.RecordNames[0]
	if recordName(newTenantKeys(v.Tenant, other), v.Token) == v.RecordName {
		t.Error("two root keys give the same record name")
	}
}
