package control

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"
)

// Host effects: what an operation does outside the store and the data path
// config (opening and closing ports, a guest device's MAC and MTU, QMP
// hot-plug). Validation stages them in the txn; once the commit is
// published and Service.mu released they run on the effects runner:
//
//	pre   before the records they concern (txn.hold) get their new binding:
//	      until then the config keeps a held record's binding in force (a
//	      new record is published without ports), so an IP never has no
//	      owner and a guest never receives frames for a MAC it does not
//	      have; when they complete the held records are republished
//	post  after that republication (unplug the NIC a record left, close
//	      ports)
//
// The runner has one queue per key (the instance), run in commit order, so
// effects on one VM are serialised and effects on different VMs run in
// parallel; nothing waits for them under Service.mu, so a monitor that
// hangs delays only the operations on its own VM. The operation waits for
// its own effects (bounded by fxWait) and returns once its change is in
// force. A definite refusal (an *Error: QEMU refused device_add, a port
// cannot be opened) refuses the operation: a compensating commit writes
// the previous values back and the effects that succeeded are undone. A
// timeout or a transient failure marks the record's new attachments
// "failed" with the reason (ENI.Status "attaching"), and the effects are
// retried with a bounded backoff; when the retries run out the operation
// is compensated as for a refusal. A record whose effects are in flight is
// not changed by another operation: that waits for them (or supersedes
// failed ones).

// hostEffect is one staged effect.
type hostEffect struct {
	key  string       // the instance: effects on one key run in order
	what string       // for logs and status reasons
	do   func() error // bounded by its own timeout; an *Error is a definite refusal
	// retry, when set, replaces do on a retry (e.g. unplug what a timed
	// out plug may have left, then plug again).
	retry func() error
	undo  func() // best effort, after a refusal
}

// fxJob is one effect queued on the runner.
type fxJob struct {
	fx   hostEffect
	run  func() error
	done chan struct{}
	err  error
}

// fxRunner runs jobs, one queue per key.
type fxRunner struct {
	mu     sync.Mutex
	queues map[string][]*fxJob
	ctx    context.Context
	stop   context.CancelFunc
	wg     sync.WaitGroup
}

func newFxRunner() *fxRunner {
	ctx, stop := context.WithCancel(context.Background())
	return &fxRunner{queues: map[string][]*fxJob{}, ctx: ctx, stop: stop}
}

// enqueue appends run to key's queue. Callers that need commit order
// enqueue with Service.mu held.
func (r *fxRunner) enqueue(fx hostEffect, run func() error) *fxJob {
	j := &fxJob{fx: fx, run: run, done: make(chan struct{})}
	r.mu.Lock()
	defer r.mu.Unlock()
	q, busy := r.queues[fx.key]
	r.queues[fx.key] = append(q, j)
	if !busy {
		r.wg.Add(1)
		go r.work(fx.key)
	}
	return j
}

func (r *fxRunner) work(key string) {
	defer r.wg.Done()
	for {
		r.mu.Lock()
		q := r.queues[key]
		if len(q) == 0 {
			delete(r.queues, key)
			r.mu.Unlock()
			return
		}
		j := q[0]
		r.queues[key] = q[1:]
		r.mu.Unlock()
		if r.ctx.Err() != nil {
			j.err = r.ctx.Err()
		} else {
			j.err = j.run()
		}
		close(j.done)
	}
}

// waitJobs waits for jobs until the deadline; it reports whether all ended.
func waitJobs(jobs []*fxJob, deadline <-chan time.Time) bool {
	for _, j := range jobs {
		select {
		case <-j.done:
		case <-deadline:
			return false
		}
	}
	return true
}

// Effect retries: fxRetries attempts after the first, the delay doubling
// from fxBackoff.
const (
	fxRetries = 5
	fxBackoff = 500 * time.Millisecond
)

// opEffects are the effects of one committed operation.
type opEffects struct {
	op     string
	p      Principal
	target string
	tx     *txn // the committed transaction
	prev   *txn // the values it replaced
	hold   []string
	pre    []*fxJob
	post   []*fxJob
	// published is closed once the held records are republished (ok) or
	// the operation is compensated or superseded (!ok); post effects wait
	// for it and run only when ok.
	published chan struct{}
	ok        bool
	// failed is the reason the pre effects are being retried ("" while
	// the first attempt runs); failedCh is closed when it is first set.
	failed    string
	failedCh  chan struct{}
	cancelled bool
	audited   bool // the refusal was audited by the compensating commit
}

// startEffectsLocked queues tx's effects (s.mu held, after the commit).
func (s *Service) startEffectsLocked(tx *txn, op string) *opEffects {
	if len(tx.pre) == 0 && len(tx.post) == 0 {
		return nil
	}
	o := &opEffects{op: op, p: tx.p, target: tx.target, tx: tx, prev: tx.prev,
		published: make(chan struct{}), failedCh: make(chan struct{})}
	for id := range tx.hold {
		o.hold = append(o.hold, id)
		s.pending[id] = o
	}
	sort.Strings(o.hold)
	for _, fx := range tx.pre {
		o.pre = append(o.pre, s.fx.enqueue(fx, fx.do))
	}
	if len(o.pre) == 0 {
		o.ok = true
		close(o.published)
	}
	for _, fx := range tx.post {
		do := fx.do
		o.post = append(o.post, s.fx.enqueue(fx, func() error {
			select {
			case <-o.published:
			case <-s.fx.ctx.Done():
				return s.fx.ctx.Err()
			}
			if !o.ok {
				return nil
			}
			return do()
		}))
	}
	return o
}

// finishEffects waits for o's effects (s.mu not held) and completes,
// compensates or schedules the retry of the operation.
func (s *Service) finishEffects(o *opEffects) error {
	if len(o.pre) > 0 {
		deadline := time.After(s.fxWait)
		all := waitJobs(o.pre, deadline)
		if err := definite(o.pre); err != nil {
			return s.refuseEffects(o, err, o.pre)
		}
		if !all || failedJobs(o.pre) != nil {
			reason := s.reason(o.pre, all)
			s.mu.Lock()
			o.failed = reason
			close(o.failedCh)
			s.mu.Unlock()
			s.log.Warn("host effects failed, retrying", "op", o.op, "target", o.target, "reason", reason)
			go s.retryEffects(o)
			return nil
		}
		if err := s.completeEffects(o); err != nil {
			return err
		}
	}
	if !waitJobs(o.post, time.After(s.fxWait)) {
		s.log.Warn("host effects after the publication still running", "op", o.op, "target", o.target)
	}
	for _, j := range o.post {
		if j.err != nil {
			s.log.Warn("host effect after the publication", "op", o.op, "what", j.fx.what, "err", j.err)
		}
	}
	return nil
}

// definite returns the first definite refusal among the ended jobs.
func definite(jobs []*fxJob) error {
	for _, j := range jobs {
		select {
		case <-j.done:
			var e *Error
			if errors.As(j.err, &e) {
				return e
			}
		default:
		}
	}
	return nil
}

// failedJobs returns the jobs that ended in an error or have not ended.
func failedJobs(jobs []*fxJob) []*fxJob {
	var out []*fxJob
	for _, j := range jobs {
		select {
		case <-j.done:
			if j.err == nil {
				continue
			}
		default:
		}
		out = append(out, j)
	}
	return out
}

func (s *Service) reason(jobs []*fxJob, ended bool) string {
	for _, j := range failedJobs(jobs) {
		select {
		case <-j.done:
			return j.fx.what + ": " + j.err.Error()
		default:
			return fmt.Sprintf("%s: no answer after %v", j.fx.what, s.fxWait)
		}
	}
	if !ended {
		return "timed out"
	}
	return ""
}

// completeEffects republishes o's held records with their new binding; a
// refusal by the data path compensates o and undoes its effects.
func (s *Service) completeEffects(o *opEffects) error {
	s.mu.Lock()
	if o.cancelled {
		s.mu.Unlock()
		return nil
	}
	s.unholdLocked(o)
	c := s.st.txn(Root)
	for _, id := range o.hold {
		if s.st.enis[id] != nil {
			c.dirty[id] = true
		}
	}
	if err := s.publishLocked(c, s.st.gen); err != nil {
		e := &Error{Code: CodeDataPath, Message: fmt.Sprintf("the data path refused the configuration of %s: %v", o.op, err), Cause: err}
		s.compensateLocked(o, e)
		o.ok = false
		close(o.published)
		s.mu.Unlock()
		s.undoEffects(o, o.pre)
		return e
	}
	o.ok = true
	close(o.published)
	s.mu.Unlock()
	return nil
}

func (s *Service) unholdLocked(o *opEffects) {
	for _, id := range o.hold {
		if s.pending[id] == o {
			delete(s.pending, id)
		}
	}
}

// refuseEffects compensates o after a definite refusal of one of jobs and
// undoes the ones that succeeded.
func (s *Service) refuseEffects(o *opEffects, err error, jobs []*fxJob) error {
	e := AsError(err)
	s.mu.Lock()
	if o.cancelled {
		s.mu.Unlock()
		return e
	}
	s.unholdLocked(o)
	s.compensateLocked(o, e)
	o.ok = false
	close(o.published)
	s.mu.Unlock()
	s.undoEffects(o, jobs)
	return e
}

// undoEffects undoes, on their keys, the jobs that succeeded.
func (s *Service) undoEffects(o *opEffects, jobs []*fxJob) {
	var undo []*fxJob
	for _, j := range jobs {
		<-j.done
		if j.err == nil && j.fx.undo != nil {
			u := j.fx.undo
			undo = append(undo, s.fx.enqueue(j.fx, func() error { u(); return nil }))
		}
	}
	waitJobs(undo, time.After(s.fxWait))
}

// compensateLocked writes back the values o's commit replaced, for the
// objects no later commit changed, with an audit event of e's code.
func (s *Service) compensateLocked(o *opEffects, e *Error) {
	o.audited = true
	for attempt := 1; attempt <= maxConflictRetries; attempt++ {
		c := s.st.txn(o.p)
		c.target, c.result, c.message, c.noEffects = o.target, e.Code, "rolled back: "+e.Message, true
		st, tx := s.st, o.tx
		for id, v := range o.prev.subnets {
			if st.subnets[id] == tx.subnets[id] {
				c.subnets[id], c.cfgDirty = v, true
			}
		}
		for id, v := range o.prev.groups {
			if st.groups[id] == tx.groups[id] {
				c.groups[id], c.cfgDirty = v, true
			}
		}
		for id, v := range o.prev.instances {
			if st.instances[id] == tx.instances[id] {
				c.instances[id] = v
			}
		}
		for id, v := range o.prev.enis {
			if st.enis[id] == tx.enis[id] {
				c.enis[id], c.dirty[id] = v, true
			}
		}
		for id, v := range o.prev.eips {
			if st.eips[id] == tx.eips[id] {
				c.eips[id] = v
				for _, a := range []*Address{v, st.eips[id]} {
					if a != nil && a.ENIID != "" {
						c.dirty[a.ENIID] = true
					}
				}
			}
		}
		err := s.commitLocked(c, o.op)
		if errors.Is(err, ErrConflict) {
			s.catchUpLocked(err)
			continue
		}
		if err != nil {
			s.log.Error("compensating commit failed", "op", o.op, "target", o.target, "err", err)
		}
		return
	}
	s.log.Error("compensating commit lost every race for the store", "op", o.op, "target", o.target)
}

// retryEffects retries o's failed pre effects with a doubling delay, then
// completes o, or compensates it when the retries run out.
func (s *Service) retryEffects(o *opEffects) {
	jobs := o.pre
	delay := fxBackoff
	for attempt := 1; attempt <= fxRetries; attempt++ {
		bad := failedJobs(jobs)
		for _, j := range bad {
			select {
			case <-j.done:
			case <-s.fx.ctx.Done():
				return
			}
		}
		select {
		case <-time.After(delay):
		case <-s.fx.ctx.Done():
			return
		}
		delay *= 2
		s.mu.Lock()
		cancelled := o.cancelled
		s.mu.Unlock()
		if cancelled {
			s.undoEffects(o, jobs)
			return
		}
		var next []*fxJob
		for _, j := range jobs {
			if j.err == nil {
				next = append(next, j)
				continue
			}
			run := j.fx.do
			if j.fx.retry != nil {
				run = j.fx.retry
			}
			next = append(next, s.fx.enqueue(j.fx, run))
		}
		jobs = next
		all := waitJobs(jobs, time.After(s.fxWait))
		if err := definite(jobs); err != nil {
			s.refuseEffects(o, err, jobs)
			return
		}
		if all && failedJobs(jobs) == nil {
			if err := s.completeEffects(o); err != nil {
				s.log.Warn("host effects done, republication refused", "op", o.op, "target", o.target, "err", err)
				return
			}
			s.log.Info("host effects done after a retry", "op", o.op, "target", o.target, "attempt", attempt)
			return
		}
		reason := s.reason(jobs, all)
		s.mu.Lock()
		o.failed = fmt.Sprintf("%s (attempt %d of %d)", reason, attempt+1, fxRetries+1)
		s.mu.Unlock()
	}
	s.refuseEffects(o, errorf(CodeIncorrectState, "%s of %s: host effects failed %d times: %s", o.op, o.target, fxRetries+1, o.failed), jobs)
}

// busyLocked returns, when a record tx changes has effects in flight, the
// effects to wait for before the operation is validated again; failed
// effects are superseded (their retries stop, what they did is undone).
func (s *Service) busyLocked(tx *txn) *opEffects {
	for id := range tx.enis {
		o := s.pending[id]
		if o == nil {
			continue
		}
		if o.failed == "" {
			return o
		}
		s.log.Warn("superseding failed host effects", "op", o.op, "target", o.target, "reason", o.failed)
		o.cancelled = true
		s.unholdLocked(o)
		o.ok = false
		close(o.published)
	}
	return nil
}

// held reports whether record id keeps its binding in force in the next
// publication: its host effects are pending.
func (s *Service) held(tx *txn, id string) bool {
	return tx.hold[id] || s.pending[id] != nil
}

// attachmentStatus is the runtime status of record e's attachment a: its
// effects pending or failed, or "" (as stored).
func (s *Service) attachmentStatus(e *ENI, a *Attachment) (status, reason string) {
	o := s.pending[e.ID]
	if o == nil {
		return "", ""
	}
	if old := o.prev.enis[e.ID]; old != nil {
		if _, prev := old.FindAttachment(a.ID); prev != nil && prev.InstanceID == a.InstanceID && prev.DeviceIndex == a.DeviceIndex {
			return "", ""
		}
	}
	if o.failed != "" {
		return AttachmentFailed, o.failed
	}
	return AttachmentAttaching, ""
}
