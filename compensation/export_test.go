package compensation

import "context"

// MarkCompensation lets the external tests build a context as a
// compensation would, to drive a Sync that is itself a compensation.
func MarkCompensation(ctx context.Context) context.Context { return markCompensation(ctx, nil) }
