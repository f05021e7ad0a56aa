// Package audit is jeton's tamper-evident audit log.
//
// A Log appends Records to numbered files audit-000001.jsonl,
// audit-000002.jsonl, ... in one directory, one JSON line per record:
//
//	{"v":1,"seq":N,"prev":"<hex MAC of record N-1; 64 zeros for N=1>","rec":{...},"mac":"<hex>"}
//
// with mac = HMAC-SHA256(key, "jeton/audit/v1" || prev || {"v":1,"seq":N,"rec":{...}}),
// where prev is the previous MAC's raw 32 bytes and the record's JSON is
// exactly as it appears on the line. A line must be byte for byte in this
// canonical form. The chain runs across files: when a file would exceed
// Config.MaxFileBytes the next file continues it.
//
// Invariants:
//   - Append returns nil only once its record is fsynced. A reveal is
//     answered only after that (DESIGN invariant 5).
//   - A failed write never breaks the chain: the file is cut back to its last
//     acknowledged record and the chain continues from there.
//   - After every group commit, HEAD (written atomically) holds the last
//     record's seq and MAC under an HMAC. Verify uses it to detect removal of
//     whole records from the end, which the chain alone cannot show.
//   - The log holds no token: tokens appear only as TokenHash values.
//
// What the design cannot detect: someone holding the key can forge any
// log, and someone who rolls back the log and HEAD together to an earlier
// consistent state goes unnoticed unless HEAD's seq is also kept elsewhere
// (for instance shipped to another system).
package audit
