package audit

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/note"
)

// SignerName names the checkpoint signer in signed notes and in verifier
// keys ("jeton-audit+<hash>+<key>").
const SignerName = "jeton-audit"

// originPrefix starts the first line of every checkpoint; the replica id
// follows it.
const originPrefix = "jeton-audit/"

// replicaPattern is what a replica id may hold: it is part of the
// checkpoint's origin line and of the anchor's storage path.
var replicaPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`)

// ValidReplica reports whether id can name a replica.
func ValidReplica(id string) bool { return replicaPattern.MatchString(id) }

// A Checkpoint commits to the head of one chain: the hash of record Seq,
// which commits to every record before it. It follows the transparency-log
// checkpoint (C2SP tlog-checkpoint, as in Go's checksum database, Trillian
// and Sigstore's Rekor): an origin line, the size, the base64 root hash, and
// extension lines, signed as a note. The root hash is the head of a hash
// chain rather than of a Merkle tree, since a verifier always reads the
// whole log and needs no inclusion proofs.
//
//	jeton-audit/<replica>
//	<seq>
//	<base64 head hash>
//	chain <32 hex digits>
//	time <RFC 3339 UTC>
//	[closed | recovered <anchored> <head>]
//
//	— jeton-audit <base64 key hash and Ed25519 signature>
type Checkpoint struct {
	Replica string
	Chain   string // the chain's id, from its first record
	Seq     uint64
	Head    [hashSize]byte
	Time    time.Time
	// Closed marks the checkpoint Close stores after a run's last record
	// (a clean stop): the chain ends at Seq until a checkpoint at the same
	// Seq, stored when the log is opened again, reopens it. A record past a
	// closed checkpoint was not written by the log.
	Closed bool
	// Recovered is set on the first checkpoint after a run that stopped
	// without closing (crash, kill -9, power loss, anchor unreachable at
	// shutdown): see Recovery. Record Seq is then the recovery record.
	Recovered *Recovery
}

// body is the signed text of c.
func (c Checkpoint) body() string {
	s := fmt.Sprintf("%s%s\n%d\n%s\nchain %s\ntime %s\n", originPrefix, c.Replica, c.Seq,
		base64.StdEncoding.EncodeToString(c.Head[:]), c.Chain, c.Time.UTC().Format(time.RFC3339Nano))
	switch {
	case c.Closed:
		s += "closed\n"
	case c.Recovered != nil:
		s += fmt.Sprintf("recovered %d %d\n", c.Recovered.Anchored, c.Recovered.Head)
	}
	return s
}

func (c Checkpoint) String() string {
	s := fmt.Sprintf("replica %s, chain %s, seq %d, head %x", c.Replica, c.Chain, c.Seq, c.Head[:8])
	switch {
	case c.Closed:
		s += ", closed"
	case c.Recovered != nil:
		s += fmt.Sprintf(", recovered %d..%d", c.Recovered.Anchored+1, c.Recovered.Head)
	}
	return s
}

// parseBody parses a checkpoint's text, which must be exactly as body
// writes it.
func parseBody(text string) (Checkpoint, error) {
	var c Checkpoint
	lines := strings.Split(strings.TrimSuffix(text, "\n"), "\n")
	bad := errors.New("audit: checkpoint is not in the jeton-audit format")
	if len(lines) != 5 && len(lines) != 6 {
		return c, bad
	}
	var ok bool
	if c.Replica, ok = strings.CutPrefix(lines[0], originPrefix); !ok || !ValidReplica(c.Replica) {
		return c, bad
	}
	seq, err := strconv.ParseUint(lines[1], 10, 64)
	if err != nil {
		return c, bad
	}
	c.Seq = seq
	head, err := base64.StdEncoding.DecodeString(lines[2])
	if err != nil || len(head) != hashSize {
		return c, bad
	}
	copy(c.Head[:], head)
	if c.Chain, ok = strings.CutPrefix(lines[3], "chain "); !ok || !validChainID(c.Chain) {
		return c, bad
	}
	ts, ok := strings.CutPrefix(lines[4], "time ")
	if !ok {
		return c, bad
	}
	if c.Time, err = time.Parse(time.RFC3339Nano, ts); err != nil {
		return c, bad
	}
	if len(lines) == 6 {
		if lines[5] == "closed" {
			c.Closed = true
		} else {
			var r Recovery
			if _, err := fmt.Sscanf(lines[5], "recovered %d %d", &r.Anchored, &r.Head); err != nil ||
				r.Anchored > r.Head || r.Head >= c.Seq {
				return c, bad
			}
			c.Recovered = &r
		}
	}
	if c.body() != text {
		return c, bad
	}
	return c, nil
}

func validChainID(s string) bool {
	if len(s) != 32 {
		return false
	}
	var b [16]byte
	return decodeHex(b[:], s)
}

func decodeHex(dst []byte, s string) bool {
	if strings.ToLower(s) != s {
		return false
	}
	n, err := hex.Decode(dst, []byte(s))
	return err == nil && n == len(dst)
}

// signCheckpoint signs c through the anchor and returns the signed note.
func signCheckpoint(ctx context.Context, a Anchor, c Checkpoint) ([]byte, error) {
	text := c.body()
	sig, pub, err := a.Sign(ctx, []byte(text))
	if err != nil {
		return nil, fmt.Errorf("sign checkpoint: %w", err)
	}
	if !ed25519.Verify(pub, []byte(text), sig) {
		return nil, errors.New("sign checkpoint: the anchor's signature does not verify under the key it names")
	}
	s, err := newStaticSigner(pub, sig)
	if err != nil {
		return nil, err
	}
	return note.Sign(&note.Note{Text: text}, s)
}

// OpenCheckpoint checks a signed checkpoint against the public keys and
// parses it. It fails unless one of keys signed it.
func OpenCheckpoint(signed []byte, keys []ed25519.PublicKey) (Checkpoint, error) {
	vs, err := verifiers(keys)
	if err != nil {
		return Checkpoint{}, err
	}
	n, err := note.Open(signed, vs)
	if err != nil {
		return Checkpoint{}, fmt.Errorf("audit: checkpoint signature: %w", err)
	}
	return parseBody(n.Text)
}

// verifiers wraps the public keys for note.Open.
func verifiers(keys []ed25519.PublicKey) (note.Verifiers, error) {
	if len(keys) == 0 {
		return nil, errors.New("audit: no public key to check checkpoints with")
	}
	var list []note.Verifier
	for _, k := range keys {
		vkey, err := VerifierKey(k)
		if err != nil {
			return nil, err
		}
		v, err := note.NewVerifier(vkey)
		if err != nil {
			return nil, err
		}
		list = append(list, v)
	}
	return note.VerifierList(list...), nil
}

// VerifierKey encodes an Ed25519 public key as a signed-note verifier key,
// "jeton-audit+<hash>+<base64>", the form `jeton audit verify --public-key`
// reads, one per line.
func VerifierKey(pub ed25519.PublicKey) (string, error) {
	if len(pub) != ed25519.PublicKeySize {
		return "", errors.New("audit: not an Ed25519 public key")
	}
	return note.NewEd25519VerifierKey(SignerName, pub)
}

// ParseVerifierKeys reads verifier keys, one per line; blank lines and
// lines starting with # are skipped.
func ParseVerifierKeys(text []byte) ([]ed25519.PublicKey, error) {
	var keys []ed25519.PublicKey
	for i, l := range bytes.Split(text, []byte("\n")) {
		s := strings.TrimSpace(string(l))
		if s == "" || strings.HasPrefix(s, "#") {
			continue
		}
		name, rest, _ := strings.Cut(s, "+")
		_, b64, _ := strings.Cut(rest, "+")
		raw, err := base64.StdEncoding.DecodeString(b64)
		if name != SignerName || err != nil || len(raw) != 1+ed25519.PublicKeySize || raw[0] != 1 {
			return nil, fmt.Errorf("audit: line %d is not a %s Ed25519 verifier key", i+1, SignerName)
		}
		pub := ed25519.PublicKey(raw[1:])
		if want, _ := VerifierKey(pub); want != s {
			return nil, fmt.Errorf("audit: line %d: the key hash does not match the key", i+1)
		}
		keys = append(keys, pub)
	}
	if len(keys) == 0 {
		return nil, errors.New("audit: no verifier key found")
	}
	return keys, nil
}

// staticSigner hands note.Sign a signature already made by the anchor:
// note.Signer has no context, and the anchor's Sign is a network call.
type staticSigner struct {
	hash uint32
	sig  []byte
}

func newStaticSigner(pub ed25519.PublicKey, sig []byte) (*staticSigner, error) {
	vkey, err := VerifierKey(pub)
	if err != nil {
		return nil, err
	}
	v, err := note.NewVerifier(vkey)
	if err != nil {
		return nil, err
	}
	return &staticSigner{hash: v.KeyHash(), sig: sig}, nil
}

func (s *staticSigner) Name() string                { return SignerName }
func (s *staticSigner) KeyHash() uint32             { return s.hash }
func (s *staticSigner) Sign([]byte) ([]byte, error) { return s.sig, nil }
