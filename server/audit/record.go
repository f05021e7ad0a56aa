package audit

import "time"

// Record is one audited call on the trusted side. It holds no value and no
// token: tokens appear only as keyed hashes.
type Record struct {
	Time     time.Time `json:"time"`
	Identity string    `json:"identity"`
	Peer     string    `json:"peer"`
	Method   string    `json:"method"`
	Purpose  string    `json:"purpose,omitempty"`
	CaseRef  string    `json:"case_ref,omitempty"`
	Items    []Item    `json:"items,omitempty"`
	// Outcome is "ok" or "failed" for the call as a whole.
	Outcome string `json:"outcome"`
	// Detail is a fixed, value-free note, such as a status code name.
	Detail string `json:"detail,omitempty"`
	// Count, when set, makes the record stand for Count refused calls of
	// Identity to Method with this Detail, from Since to Time, that were
	// not written one by one: refusals past a rate are aggregated so that
	// a flood of them cannot fill the disk, yet each is accounted for.
	Count int       `json:"count,omitempty"`
	Since time.Time `json:"since,omitzero"`
	// Chain is set on the first record of every chain, and only there.
	Chain *ChainStart `json:"chain,omitempty"`
	// Recovery is set on the record the log writes when it continues a
	// chain after an unclean stop, and only there.
	Recovery *Recovery `json:"recovery,omitempty"`
}

// Methods of the records only the log writes; Append refuses them, and
// any other Method starting with "audit/".
const (
	// MethodChainStart is the Method of the record that opens a chain.
	MethodChainStart = "audit/chain-start"
	// MethodRecovered is the Method of a recovery record.
	MethodRecovered = "audit/recovered"
)

// Recovery says what a run that stopped without closing its chain left
// behind (crash, kill -9, power loss, or the anchor unreachable at
// shutdown). Its last checkpoint covered records up to Anchored; it wrote
// records up to Head, which no checkpoint covered while it ran: until the
// next run anchored them, someone with write access to the audit
// directory could have changed, removed or appended to them undetected.
// The next Open writes this as record Head+1, and the checkpoint that
// first covers it carries it too, so the window is on record.
type Recovery struct {
	Anchored uint64 `json:"anchored"`
	Head     uint64 `json:"head"`
}

// ChainStart opens a chain. A replica's log is one chain until an operator
// archives it (after damage, loss or a replaced file); the next chain then
// names the last checkpoint of the one before, so the break is on record
// and anchored like every other record.
type ChainStart struct {
	// ID is 32 random hex digits; every checkpoint of the chain names it.
	ID      string `json:"id"`
	Replica string `json:"replica"`
	// Previous is the signed checkpoint (a note, as stored in the anchor)
	// of the chain this one follows; empty for a replica's first chain.
	Previous string `json:"previous,omitempty"`
	// Archive is where the operator put the previous chain's files,
	// relative to the audit directory, and Reason why, as given to
	// jeton audit archive.
	Archive string `json:"archive,omitempty"`
	Reason  string `json:"reason,omitempty"`
}

// Item is the outcome for one token of a call.
type Item struct {
	// TokenHash is a keyed hash of the token, so an investigator holding a
	// token can find its reveals, and the log alone reveals no token.
	TokenHash string `json:"token_hash,omitempty"`
	Outcome   string `json:"outcome"`
}

// Item outcomes.
const (
	OutcomeRevealed = "revealed"
	OutcomeMasked   = "masked"
	OutcomeNotFound = "not_found" // unknown, expired, erased or tampered
	OutcomeDenied   = "denied"    // exists or not, the caller may not see it
	OutcomeInvalid  = "invalid"   // malformed token
	// OutcomeAmbiguous: a format-preserving token matched records in
	// several of the caller's tenants; none was revealed.
	OutcomeAmbiguous = "ambiguous"
)
