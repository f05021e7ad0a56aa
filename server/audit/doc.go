// Package audit is jeton's tamper-evident audit log.
//
// A Log appends Records to numbered files audit-000001.jsonl,
// audit-000002.jsonl, ... in one directory, one JSON line per record:
//
//	{"v":2,"seq":N,"prev":"<hex hash of record N-1; 64 zeros for N=1>","rec":{...},"hash":"<hex>"}
//
// with hash = SHA-256("jeton/audit/v2\x00" || prev || {"v":2,"seq":N,"rec":{...}}),
// where prev is the previous hash's raw 32 bytes and the record's JSON is
// exactly as it appears on the line. A line must be byte for byte in this
// canonical form. The chain runs across files: when a file would exceed
// Config.MaxFileBytes the next file continues it. Record 1 opens the chain
// (ChainStart): a random chain id, the replica, and, after an operator
// archived a broken chain, that chain's last signed checkpoint.
//
// The chain is unkeyed, so anyone can check it, and anyone could rewrite
// it. What makes it binding is the anchor (Config.Anchor): every
// CheckpointEvery records or CheckpointInterval, and at Close, the log signs
// a Checkpoint of its head (replica, chain, seq, head hash, time) with an
// Ed25519 key that never leaves the anchor (a Vault Transit key in
// production) and stores it outside the directory with check-and-set, so
// it only moves forward. A verifier holding only the public key and the
// latest checkpoint detects any edit, reordering, removal of records
// (from the end too), rollback to an older copy and a wipe, and cannot
// forge a log. The model is the transparency log's signed checkpoint
// (Certificate Transparency, Trillian, Go's checksum database, Sigstore's
// Rekor), over a hash chain instead of a Merkle tree.
//
// Invariants:
//   - Append returns nil only once its record is fsynced, in the file at
//     the log's path. A reveal is answered only after that (DESIGN
//     invariant 5). One fsync covers every record committed together.
//   - A failed write never breaks the chain: the file is cut back to its last
//     acknowledged record and the chain continues from there.
//   - If the file being written is no longer the one at its path (replaced,
//     moved, deleted), every later Append fails and Healthy reports it until
//     an operator recovers the log (Archive). Checkpoints still cover the
//     records acknowledged before, so a replacement that lacks them shows.
//   - Open refuses a log that does not verify, is behind or disagrees with
//     the anchor's checkpoint, or is missing while the anchor has one.
//   - The log holds no token: tokens appear only as TokenHash values, keyed
//     by Config.Key, which plays no part in the chain.
//
// What the design cannot detect: changes to records written after the last
// checkpoint (at most CheckpointEvery records or CheckpointInterval), and
// anything by someone who controls the anchor too (Vault: the signing key
// and the stored checkpoints).
package audit
