// Package audit is jeton's tamper-evident audit log.
package audit
