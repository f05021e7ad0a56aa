package tokenizer

import (
	"encoding/binary"
	"errors"
	"strconv"
	"strings"
	"time"
)

// Key identity: the one place that says, for every key jeton keeps
// wrapped, which KEK wraps it, which associated data binds it, where the
// store keeps it and how its blob is laid out. Wrap, unwrap, rotate,
// destroy, purge and rewrap all ask keyID; nothing read from the store
// chooses a KEK (DESIGN invariant 11).
//
//	key                      identity              store name                 KEK
//	tenant root key          (tenant, 0, root)     jeton:k:<tenant>:root      the main KEK ""
//	DEK of generation n      (tenant, n, dek)      jeton:k:<tenant>:gen:<n>   "<tenant>-g<n>", its own
//	the service's root key   ("_system", 0, root)  jeton:k:_system:root       the main KEK ""
//
// A tenant root key derives the keys that name store entries and seal
// idempotency entries; a DEK derives each record's key and the
// generation's deterministic-token key (see genKeys). The main KEK always
// exists in the KeyManager. A generation's KEK is created on its first
// wrap and destroyed by DestroyGeneration or PurgeTenant, which is what
// makes a Redis backup's copy of the wrapped DEK useless.
//
// Beside the keys, each tenant has in the store:
//
//	jeton:k:<tenant>:destroyed:<n>  marker: generation n is destroyed (markerBlob)
//	jeton:k:<tenant>:current        the generation new records use, a hint (currentBlob)
//
// Nothing of these chooses a key either. The pointer must name a
// generation that exists and is only walked up from (keyring.readCurrent);
// a generation number above MaxGenerations is never read or created; a
// key blob's creation time is bound into its associated data; and a
// generation whose KEK the KeyManager no longer holds is destroyed,
// whatever the markers say.
type keyID struct {
	tenant  string
	gen     uint32 // 0 for a root key
	purpose keyPurpose
}

// keyPurpose says what a wrapped key is for. Its text is part of the
// associated data, so it must never change.
type keyPurpose string

const (
	purposeRoot keyPurpose = "root"
	purposeDEK  keyPurpose = "dek"
)

// MaxGenerations is the most generations a tenant can have. It bounds
// every walk over a tenant's generations, whatever the store claims: a
// generation number above it is never read, cached or created. Rotating
// monthly, a tenant reaches it after 85 years.
const MaxGenerations = 1024

// mainKEK names the KeyManager's main KEK.
const mainKEK = ""

func rootKeyID(tenant string) keyID { return keyID{tenant: tenant, purpose: purposeRoot} }

func dekKeyID(tenant string, gen uint32) keyID {
	return keyID{tenant: tenant, gen: gen, purpose: purposeDEK}
}

// kek names the KEK that wraps the key.
func (id keyID) kek() string {
	if id.purpose == purposeDEK {
		return GenerationKEK(id.tenant, id.gen)
	}
	return mainKEK
}

// ad is the associated data that binds a wrapped key, stored as a
// version 4 blob, to its identity and to its creation time:
//
//	"jeton/v2/key" 0x00 purpose 0x00 tenant 0x00 generation (uint32) created (int64 Unix seconds, 0: unknown)
//
// both integers big endian. Purposes and tenant names never contain 0x00,
// so no two identities share an encoding. A wrapped key copied to another
// tenant, generation or purpose, or edited, or whose stored creation time
// was changed, fails to unwrap, even under the main KEK that every
// tenant's root key shares.
func (id keyID) ad(created time.Time) []byte {
	return binary.BigEndian.AppendUint64(id.appendIdentity(nil, "jeton/v2/key"), uint64(unixOrZero(created)))
}

// adV3 is the associated data of a version 3 blob, which binds the
// identity but not the creation time: "jeton/v1/key" 0x00 purpose 0x00
// tenant 0x00 generation (uint32, big endian).
func (id keyID) adV3() []byte { return id.appendIdentity(nil, "jeton/v1/key") }

func (id keyID) appendIdentity(b []byte, label string) []byte {
	b = append(b, label...)
	b = append(b, 0)
	b = append(b, id.purpose...)
	b = append(b, 0)
	b = append(b, id.tenant...)
	b = append(b, 0)
	return binary.BigEndian.AppendUint32(b, id.gen)
}

// unixOrZero is t in Unix seconds, 0 for the zero time: what a key blob
// stores, and what its associated data binds.
func unixOrZero(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.Unix()
}

// storeName is where the store keeps the wrapped key.
func (id keyID) storeName() string {
	if id.purpose == purposeDEK {
		return genName(id.tenant, id.gen)
	}
	return rootName(id.tenant)
}

// String names the key for errors and logs; it holds no key material.
func (id keyID) String() string {
	if id.purpose == purposeDEK {
		return "tenant " + id.tenant + " generation " + strconv.FormatUint(uint64(id.gen), 10) + " data key"
	}
	return "tenant " + id.tenant + " root key"
}

// opener returns the KEK and associated data that open a stored blob of
// id. Only the blob's version and creation time are read from the store,
// and every version maps to a KEK computed from id or to the main KEK:
// the KEK name that a version 2 blob carries is ignored.
//
//   - version 4, what jeton writes: id.kek(), bound with id.ad(created),
//     so the creation time the blob states is authenticated when it
//     unwraps.
//   - version 3, written before creation times were bound: id.kek(),
//     bound with id.adV3(); its creation time is not authenticated.
//   - version 2, written before keys were bound: id.kek(), no associated
//     data (root keys were under the main KEK, DEKs under their own).
//   - version 1, written before per-generation KEKs: the main KEK, no
//     associated data.
//
// Versions 1 to 3 stay readable until Rewrap upgrades them. Unbound blobs
// under the main KEK could be moved between tenants by whoever writes to
// the store; custodians close that door for good by rotating the main KEK,
// running Rewrap, then raising the KEK's min_decryption_version, after
// which no unbound ciphertext opens (README, "Upgrading key blobs").
func (id keyID) opener(b keyBlob) (kek string, ad []byte) {
	switch b.version {
	case keyBlobVersion1:
		return mainKEK, nil
	case keyBlobVersion2:
		return id.kek(), nil
	case keyBlobVersion3:
		return id.kek(), id.adV3()
	default:
		return id.kek(), id.ad(b.created)
	}
}

// GenerationKEK names the KEK of generation gen of tenant in the
// KeyManager: "<tenant>-g<gen>". Tenant names are a-z, 0-9 and '-', so
// reading "-g<digits>" from the right recovers tenant and generation
// (ParseGenerationKEK): no two generations share a KEK.
func GenerationKEK(tenant string, gen uint32) string {
	return generationKEKPrefix(tenant) + strconv.FormatUint(uint64(gen), 10)
}

// generationKEKPrefix starts the name of every generation KEK of tenant,
// and of no other tenant's but those whose name is tenant + "-g<digits>"
// and more: filter with ParseGenerationKEK.
func generationKEKPrefix(tenant string) string { return tenant + "-g" }

// ParseGenerationKEK is the inverse of GenerationKEK. ok is false for any
// name GenerationKEK cannot return, the main KEK's included. Key managers
// use it to refuse KEK names the tokenizer never asks for.
func ParseGenerationKEK(name string) (tenant string, gen uint32, ok bool) {
	i := strings.LastIndex(name, "-g")
	if i < 0 {
		return "", 0, false
	}
	n, err := strconv.ParseUint(name[i+2:], 10, 32)
	if err != nil || n == 0 || !ValidName(name[:i]) {
		return "", 0, false
	}
	if GenerationKEK(name[:i], uint32(n)) != name { // leading zeros, '+'
		return "", 0, false
	}
	return name[:i], uint32(n), true
}

// Store names of the keyring. The tenant is followed by ':', so the
// prefix of tenant "acme" never matches "acme-2".
func keyPrefix(tenant string) string   { return "jeton:k:" + tenant + ":" }
func rootName(tenant string) string    { return keyPrefix(tenant) + "root" }
func currentName(tenant string) string { return keyPrefix(tenant) + "current" }
func genName(tenant string, gen uint32) string {
	return keyPrefix(tenant) + "gen:" + strconv.FormatUint(uint64(gen), 10)
}
func destroyedName(tenant string, gen uint32) string {
	return keyPrefix(tenant) + "destroyed:" + strconv.FormatUint(uint64(gen), 10)
}

// Stored blobs of the keyring. Each starts with a version byte. Times are
// int64 Unix seconds, big endian.
const (
	// keyBlobVersion1 is version | wrapped. Read, never written.
	keyBlobVersion1 = 0x01
	// keyBlobVersion2 is version | created | len(kek) (one byte) | kek |
	// wrapped. Read, never written; kek is skipped, not used.
	keyBlobVersion2 = 0x02
	// keyBlobVersion3 is version | created | wrapped, wrapped bound to its
	// identity but not to created (keyID.adV3). Read, never written.
	keyBlobVersion3 = 0x03
	// keyBlobVersion4 is version | created | wrapped, wrapped bound to its
	// identity and to created (keyID.ad). Created 0 means unknown.
	keyBlobVersion4 = 0x04
	// markerVersion1 is version | destroyed: a generation's destroyed
	// marker.
	markerVersion1 = 0x01
	// currentVersion1 is version | generation (uint32, big endian).
	currentVersion1 = 0x01
)

// keyBlob is a stored wrapped key, parsed. Which KEK wraps it and what
// binds it is not part of it: keyID.opener says.
type keyBlob struct {
	version byte
	created time.Time // zero when unknown (version 1)
	wrapped []byte
}

// newKeyBlob returns a key blob in the format jeton writes. Its wrapped
// key must be bound with id.ad(created).
func newKeyBlob(created time.Time, wrapped []byte) keyBlob {
	return keyBlob{version: keyBlobVersion4, created: created, wrapped: wrapped}
}

// bound reports whether the blob is bound to its identity.
func (b keyBlob) bound() bool { return b.version >= keyBlobVersion3 }

// createdBound reports whether the blob's creation time is authenticated
// once it unwraps.
func (b keyBlob) createdBound() bool { return b.version == keyBlobVersion4 }

// encode writes b as version 4, whatever version it was read as: a blob is
// only rewritten wrapped and bound anew (Rewrap).
func (b keyBlob) encode() []byte {
	out := make([]byte, 0, 9+len(b.wrapped))
	out = binary.BigEndian.AppendUint64(append(out, keyBlobVersion4), uint64(unixOrZero(b.created)))
	return append(out, b.wrapped...)
}

var errKeyBlob = errors.New("tokenizer: stored key blob is malformed or has an unknown version")

func parseKeyBlob(b []byte) (keyBlob, error) {
	unix := func(b []byte) time.Time {
		if s := int64(binary.BigEndian.Uint64(b)); s != 0 {
			return time.Unix(s, 0).UTC()
		}
		return time.Time{}
	}
	switch {
	case len(b) >= 2 && b[0] == keyBlobVersion1:
		return keyBlob{version: keyBlobVersion1, wrapped: b[1:]}, nil
	case len(b) >= 1+8+1 && b[0] == keyBlobVersion2:
		n := int(b[9])
		if len(b) < 10+n+1 {
			return keyBlob{}, errKeyBlob
		}
		return keyBlob{version: keyBlobVersion2, created: unix(b[1:9]), wrapped: b[10+n:]}, nil
	case len(b) >= 1+8+1 && (b[0] == keyBlobVersion3 || b[0] == keyBlobVersion4):
		return keyBlob{version: b[0], created: unix(b[1:9]), wrapped: b[9:]}, nil
	}
	return keyBlob{}, errKeyBlob
}

func markerBlob(destroyed time.Time) []byte {
	return binary.BigEndian.AppendUint64([]byte{markerVersion1}, uint64(destroyed.Unix()))
}

// parseMarker returns when a generation was destroyed. Any marker, even a
// malformed one, means destroyed: erasure must not hinge on its format.
func parseMarker(b []byte) time.Time {
	if len(b) != 9 || b[0] != markerVersion1 {
		return time.Time{}
	}
	return time.Unix(int64(binary.BigEndian.Uint64(b[1:])), 0).UTC()
}

func currentBlob(gen uint32) []byte {
	return binary.BigEndian.AppendUint32([]byte{currentVersion1}, gen)
}
