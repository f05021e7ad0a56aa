// Package approval keeps the pending requests of dual control: a generation
// destroy or a tenant purge asked for by one custodian, waiting for others
// to approve it.
//
// Requests and approvals live in the shared store (Redis in production),
// so that any replica can list, approve or cancel them. Whoever can read
// that store must not learn who asked for what and why (a reason may name
// a person), and whoever can write to it must not be able to forge an
// approval, nor change a request's requester, action, target or expiry:
// every request and every approval is sealed with AES-256-GCM under a key
// that only the service holds (derived from its key hierarchy, see
// tokenizer.DeriveKey), bound to its request id and kind, and padded so
// that its size says little of its reason. A request or approval that
// does not open is refused, never acted on. Entries written by earlier
// releases (readable JSON with an HMAC-SHA256) are still read, and
// refused the same way if their MAC fails; they lapse with their request.
//
// What sealing cannot stop is a rollback: someone who copied a request's
// entries can put them back after a cancel or after it was carried out.
// Expiry bounds that window (the expiry is sealed), a live
// custodian must still act for anything to happen, and every step is in
// the audit log.
package approval

import (
	"bytes"
	"cmp"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/jeton-dev/jeton/tokenizer"
)

// Action is what a request does once approved.
type Action string

const (
	// DestroyGeneration crypto-shreds one generation of a tenant.
	DestroyGeneration Action = "destroy_generation"
	// PurgeTenant erases a whole tenant.
	PurgeTenant Action = "purge_tenant"
)

// Request is a pending destructive action.
type Request struct {
	ID         string    `json:"id"`
	Action     Action    `json:"action"`
	Tenant     string    `json:"tenant"`
	Generation uint32    `json:"generation,omitempty"`
	Requester  string    `json:"requester"`
	Reason     string    `json:"reason"`
	Created    time.Time `json:"created"`
	Expires    time.Time `json:"expires"`
	// Required is the number of distinct custodians who must agree, the
	// requester included.
	Required int `json:"required"`

	// Approvers are the custodians other than the requester who approved,
	// oldest first. Filled in when the request is read; not sealed with
	// the request, each approval is sealed on its own.
	Approvers []string `json:"-"`
}

// Approved reports whether enough distinct custodians agree, counting
// only those, the requester included, for which counts returns true (say,
// those still custodians of the tenant).
func (r Request) Approved(counts func(identity string) bool) bool {
	n := 0
	if counts(r.Requester) {
		n++
	}
	for _, a := range r.Approvers {
		if a != r.Requester && counts(a) {
			n++
		}
	}
	return n >= r.Required
}

// Errors callers branch on.
var (
	// ErrNotFound: no such request (never made, carried out, cancelled,
	// or long expired).
	ErrNotFound = errors.New("approval: no such pending request")
	// ErrExpired: the request lapsed before it was carried out.
	ErrExpired = errors.New("approval: the request has expired")
	// ErrTampered: a stored request or approval does not open (fails its
	// authentication); it was altered, forged or moved in the store.
	ErrTampered = errors.New("approval: a stored request or approval fails its integrity check")
	// ErrSelfApproval: the requester tried to approve its own request.
	ErrSelfApproval = errors.New("approval: a custodian cannot approve its own request")
)

// keep is how long a request's entries outlive its expiry, so that a late
// approval is told "expired" rather than "not found".
const keep = 24 * time.Hour

// Store names. Requests live apart from every tenant's data.
const (
	prefix    = "jeton:a:"
	indexName = prefix + "index" // set of request ids
)

func requestName(id string) string   { return prefix + "req:" + id }
func approvalsName(id string) string { return prefix + "req:" + id + ":approvals" }

// Book keeps the pending requests in a tokenizer.Store. It is safe for
// concurrent use, by any number of replicas sharing the store.
type Book struct {
	store tokenizer.Store
	key   []byte      // authenticates entries of earlier releases
	aead  cipher.AEAD // seals entries
	now   func() time.Time
	rand  io.Reader
}

// Option configures a Book.
type Option func(*Book)

// WithClock sets the clock (time.Now by default).
func WithClock(now func() time.Time) Option { return func(b *Book) { b.now = now } }

// WithRand sets the source of request ids (crypto/rand by default).
func WithRand(r io.Reader) Option { return func(b *Book) { b.rand = r } }

// New returns a Book over store whose entries are sealed under key, a
// secret of at least 32 bytes that every replica derives the same way.
func New(store tokenizer.Store, key []byte, opts ...Option) (*Book, error) {
	if store == nil {
		return nil, errors.New("approval: nil store")
	}
	if len(key) < 32 {
		return nil, errors.New("approval: the key must be at least 32 bytes")
	}
	sealKey, err := hkdf.Expand(sha256.New, key, "jeton/v2/approval/seal", 32)
	if err != nil {
		return nil, fmt.Errorf("approval: deriving the sealing key: %w", err)
	}
	block, err := aes.NewCipher(sealKey)
	clear(sealKey)
	if err != nil {
		return nil, fmt.Errorf("approval: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("approval: %w", err)
	}
	b := &Book{store: store, key: slices.Clone(key), aead: aead, now: time.Now, rand: rand.Reader}
	for _, o := range opts {
		o(b)
	}
	return b, nil
}

// Stored entries. A sealed entry is
//
//	"2." base64url(nonce (12 bytes) | AES-256-GCM(payload padded with spaces to a multiple of padTo))
//
// with associated data "jeton/v2/approval/" domain 0x00 id, so that
// neither a request nor an approval opens under another id or as the
// other kind. An entry of an earlier release is base64url(payload) "."
// base64url(HMAC-SHA256(key, "jeton/v1/approval/" domain 0x00 id 0x00
// payload)); it is only read.
const (
	sealedPrefix = "2."
	// padTo is the padding block: a request with a reason of a few
	// hundred bytes is stored in one block, whatever the reason says.
	padTo = 512
)

// seal seals payload, a JSON value, for the entry of kind domain of
// request id.
func (b *Book) seal(domain, id string, payload []byte) ([]byte, error) {
	n := b.aead.NonceSize()
	padded := make([]byte, n, n+(len(payload)/padTo+1)*padTo+b.aead.Overhead())
	if _, err := io.ReadFull(b.rand, padded[:n]); err != nil {
		return nil, fmt.Errorf("approval: reading randomness: %w", err)
	}
	// JSON ignores trailing spaces.
	body := append(slices.Clone(payload), bytes.Repeat([]byte{' '}, padTo-len(payload)%padTo)...)
	sealed := b.aead.Seal(padded, padded[:n], body, sealAD(domain, id))
	return []byte(sealedPrefix + base64.RawURLEncoding.EncodeToString(sealed)), nil
}

func sealAD(domain, id string) []byte { return []byte("jeton/v2/approval/" + domain + "\x00" + id) }

// open returns the payload of a stored entry, ErrTampered if it does not
// open as the entry of kind domain of request id.
func (b *Book) open(domain, id string, stored []byte) ([]byte, error) {
	enc := base64.RawURLEncoding
	if rest, ok := bytes.CutPrefix(stored, []byte(sealedPrefix)); ok {
		raw, err := enc.DecodeString(string(rest))
		n := b.aead.NonceSize()
		if err != nil || len(raw) < n {
			return nil, ErrTampered
		}
		payload, err := b.aead.Open(nil, raw[:n], raw[n:], sealAD(domain, id))
		if err != nil {
			return nil, ErrTampered
		}
		return bytes.TrimRight(payload, " "), nil
	}
	p, m, ok := strings.Cut(string(stored), ".")
	if !ok {
		return nil, ErrTampered
	}
	payload, err1 := enc.DecodeString(p)
	sum, err2 := enc.DecodeString(m)
	if err1 != nil || err2 != nil || !hmac.Equal(sum, b.legacyMAC(domain, id, payload)) {
		return nil, ErrTampered
	}
	return payload, nil
}

// legacyMAC authenticates an entry of an earlier release.
func (b *Book) legacyMAC(domain, id string, payload []byte) []byte {
	m := hmac.New(sha256.New, b.key)
	m.Write([]byte("jeton/v1/approval/" + domain + "\x00" + id + "\x00"))
	m.Write(payload)
	return m.Sum(nil)
}

var idEncoding = base32.StdEncoding.WithPadding(base32.NoPadding)

// Create stores a new request. It sets ID and Created, and Expires to
// Created plus ttl. Required must be at least 1.
func (b *Book) Create(ctx context.Context, r Request, ttl time.Duration) (Request, error) {
	if r.Required < 1 || ttl <= 0 || r.Requester == "" || r.Tenant == "" {
		return Request{}, errors.New("approval: a request needs a requester, a tenant, a positive ttl and at least one approval")
	}
	var raw [10]byte
	if _, err := io.ReadFull(b.rand, raw[:]); err != nil {
		return Request{}, fmt.Errorf("approval: reading randomness: %w", err)
	}
	r.ID = strings.ToLower(idEncoding.EncodeToString(raw[:]))
	r.Created = b.now().UTC()
	r.Expires = r.Created.Add(ttl)
	r.Approvers = nil
	payload, err := json.Marshal(r)
	if err != nil {
		return Request{}, err
	}
	sealed, err := b.seal("request", r.ID, payload)
	if err != nil {
		return Request{}, err
	}
	life := ttl + keep
	won, err := b.store.PutNew(ctx, []tokenizer.Entry{{Key: requestName(r.ID), Value: sealed, TTL: life}})
	if err != nil {
		return Request{}, fmt.Errorf("approval: %w: %v", tokenizer.ErrUnavailable, err)
	}
	if !won[0] {
		return Request{}, errors.New("approval: request id collision; retry")
	}
	// The index lives as long as the newest request it names.
	if err := b.store.AddToSet(ctx, indexName, []string{r.ID}, life); err != nil {
		return Request{}, fmt.Errorf("approval: %w: %v", tokenizer.ErrUnavailable, err)
	}
	return r, nil
}

// Get returns a request with its approvals, each checked. An expired
// request is returned with ErrExpired.
func (b *Book) Get(ctx context.Context, id string) (Request, error) {
	if !validID(id) {
		return Request{}, ErrNotFound
	}
	vals, err := b.store.Get(ctx, []string{requestName(id)})
	if err != nil {
		return Request{}, fmt.Errorf("approval: %w: %v", tokenizer.ErrUnavailable, err)
	}
	if vals[0] == nil {
		return Request{}, ErrNotFound
	}
	payload, err := b.open("request", id, vals[0])
	if err != nil {
		return Request{}, err
	}
	var r Request
	if err := json.Unmarshal(payload, &r); err != nil || r.ID != id {
		return Request{}, ErrTampered
	}
	members, err := b.store.SetMembers(ctx, approvalsName(id))
	if err != nil {
		return Request{}, fmt.Errorf("approval: %w: %v", tokenizer.ErrUnavailable, err)
	}
	type approval struct {
		By string    `json:"by"`
		At time.Time `json:"at"`
	}
	var approvals []approval
	for _, m := range members {
		payload, err := b.open("approval", id, []byte(m))
		if err != nil {
			return Request{}, err
		}
		var a approval
		if err := json.Unmarshal(payload, &a); err != nil {
			return Request{}, ErrTampered
		}
		approvals = append(approvals, a)
	}
	slices.SortFunc(approvals, func(x, y approval) int { return cmp.Or(x.At.Compare(y.At), strings.Compare(x.By, y.By)) })
	for _, a := range approvals {
		if !slices.Contains(r.Approvers, a.By) {
			r.Approvers = append(r.Approvers, a.By)
		}
	}
	if !b.now().Before(r.Expires) {
		return r, ErrExpired
	}
	return r, nil
}

// Approve records approver's approval of request id and returns the
// request as it now stands. Approving twice is harmless. The requester
// cannot approve (ErrSelfApproval), nor can anyone approve an expired
// request (ErrExpired) or one that fails its integrity check
// (ErrTampered). Whether approver may approve (a custodian of the tenant)
// is the caller's to decide first.
func (b *Book) Approve(ctx context.Context, id, approver string) (Request, error) {
	r, err := b.Get(ctx, id)
	if err != nil {
		return r, err
	}
	if approver == r.Requester {
		return r, ErrSelfApproval
	}
	if slices.Contains(r.Approvers, approver) {
		return r, nil
	}
	payload, err := json.Marshal(struct {
		By string    `json:"by"`
		At time.Time `json:"at"`
	}{approver, b.now().UTC()})
	if err != nil {
		return r, err
	}
	sealed, err := b.seal("approval", id, payload)
	if err != nil {
		return r, err
	}
	life := r.Expires.Sub(b.now()) + keep
	if err := b.store.AddToSet(ctx, approvalsName(id), []string{string(sealed)}, life); err != nil {
		return r, fmt.Errorf("approval: %w: %v", tokenizer.ErrUnavailable, err)
	}
	// Read back: concurrent approvals all count.
	return b.Get(ctx, id)
}

// Remove deletes a request and its approvals, once carried out or
// cancelled. Removing an absent request succeeds.
func (b *Book) Remove(ctx context.Context, id string) error {
	if !validID(id) {
		return nil
	}
	if _, err := b.store.Delete(ctx, []string{requestName(id), approvalsName(id)}); err != nil {
		return fmt.Errorf("approval: %w: %v", tokenizer.ErrUnavailable, err)
	}
	return nil
}

// List returns the pending, unexpired requests, oldest first, and how many
// stored requests failed their integrity check (they are left out: the
// caller should raise an alert).
func (b *Book) List(ctx context.Context) (reqs []Request, tampered int, err error) {
	ids, err := b.store.SetMembers(ctx, indexName)
	if err != nil {
		return nil, 0, fmt.Errorf("approval: %w: %v", tokenizer.ErrUnavailable, err)
	}
	for _, id := range ids {
		r, err := b.Get(ctx, id)
		switch {
		case err == nil:
			reqs = append(reqs, r)
		case errors.Is(err, ErrTampered):
			tampered++
		case errors.Is(err, ErrNotFound), errors.Is(err, ErrExpired):
		default:
			return nil, 0, err
		}
	}
	slices.SortFunc(reqs, func(x, y Request) int { return x.Created.Compare(y.Created) })
	return reqs, tampered, nil
}

// validID accepts what Create makes: 16 characters of lower-case base32.
func validID(id string) bool {
	if len(id) != 16 {
		return false
	}
	for _, c := range id {
		if !(c >= 'a' && c <= 'z' || c >= '2' && c <= '7') {
			return false
		}
	}
	return true
}
