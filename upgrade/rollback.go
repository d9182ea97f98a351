package upgrade

import (
	"context"
	"fmt"
	"time"
)

// rollbackContext is the context of a rollback (fail, failAdd): the run's
// values without its cancellation, so that a run cancelled while a node
// was swapped or gated still puts that node back, bounded by
// Config.RollbackTimeout (0: twice the gate timeout).
func (r *runner) rollbackContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), r.rollbackTimeout())
}

func (r *runner) rollbackTimeout() time.Duration {
	if r.cfg.RollbackTimeout > 0 {
		return r.cfg.RollbackTimeout
	}
	gate := r.cfg.GateTimeout
	if gate <= 0 {
		gate = DefaultGateTimeout
	}
	return 2 * gate
}

// cancelled says in err that the run was cancelled when ctx has ended, so a
// step cut short by the cancellation does not read as a failure of the
// cluster. The context's error stays wrapped (errors.Is).
func cancelled(ctx context.Context, err error) error {
	if err == nil || ctx.Err() == nil {
		return err
	}
	return fmt.Errorf("the run was cancelled (%w): %w", context.Cause(ctx), err)
}

// afterCancel is appended to the detail of a rollback's event when the
// run's context had ended: the rollback ran anyway.
func afterCancel(ctx context.Context) string {
	if ctx.Err() == nil {
		return ""
	}
	return " (the run was cancelled; the rollback ran under its own timeout)"
}
