package redisstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// ErrReplicaAcks is wrapped by the error of a write that fewer replicas
// than Config.MinReplicaAcks acknowledged in time. The write may still be
// on the master; it is not known to survive the master's loss, so the call
// must not be acknowledged to its caller.
var ErrReplicaAcks = errors.New("redisstore: too few replicas acknowledged the write")

// replicaAcks makes every write pipeline of the Store wait for replicas.
// Redis replication is asynchronous: a master answers a write before any
// replica has it, and a replica promoted after the master's crash lacks
// what it never received. WAIT n timeout, sent on the connection that
// carried the writes, blocks until n replicas acknowledge everything that
// connection wrote, or until timeout, and answers how many did.
//
// It is a go-redis hook rather than a WAIT queued by the Store because on
// Redis Cluster a pipeline is split per master and each part travels on
// its own connection; WAIT has no key, so only a hook on each node's
// client can put it on the right connection, after that node's writes.
//
// WAITAOF (Redis 7.2+, the replicas' AOF fsynced rather than received) is
// not used: Debian 12's Redis, which the tests run, is 7.0 and lacks it.
// With appendfsync always on the replicas too, a replica's acknowledgement
// is a reply like any other, and Redis writes replies only after the AOF
// flush (and fsync) of the same event-loop step.
type replicaAcks struct {
	n       int
	timeout time.Duration
}

// writeKey marks a context whose pipelines write records (see withWrite).
type writeKey struct{}

// withWrite marks ctx so that the pipeline run with it waits for replica
// acknowledgements. Reads and the budget counters others keep in the same
// Redis are left unmarked: only a stored record is a promise to a caller.
func withWrite(ctx context.Context) context.Context {
	return context.WithValue(ctx, writeKey{}, true)
}

func isWrite(ctx context.Context) bool {
	b, _ := ctx.Value(writeKey{}).(bool)
	return b
}

// install adds the hook to c, or on a cluster to the client of every node
// c creates; it must run before c is used.
func (a replicaAcks) install(c redis.UniversalClient) {
	if cc, ok := c.(*redis.ClusterClient); ok {
		cc.OnNewNode(func(node *redis.Client) { node.AddHook(a) })
		return
	}
	c.AddHook(a)
}

func (replicaAcks) DialHook(next redis.DialHook) redis.DialHook { return next }

func (replicaAcks) ProcessHook(next redis.ProcessHook) redis.ProcessHook { return next }

// ProcessPipelineHook appends WAIT to a marked pipeline, so it runs on the
// same connection right after the writes, and fails the pipeline when too
// few replicas acknowledged.
func (a replicaAcks) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if !isWrite(ctx) {
			return next(ctx, cmds)
		}
		wait := redis.NewIntCmd(ctx, "wait", a.n, a.timeout.Milliseconds())
		// A full slice expression: the caller's slice is never written.
		if err := next(ctx, append(cmds[:len(cmds):len(cmds)], wait)); err != nil {
			return err
		}
		got, err := wait.Result()
		if err != nil {
			return fmt.Errorf("redisstore: WAIT: %w", err)
		}
		if got < int64(a.n) {
			return fmt.Errorf("%w: %d of %d within %s", ErrReplicaAcks, got, a.n, a.timeout)
		}
		return nil
	}
}
