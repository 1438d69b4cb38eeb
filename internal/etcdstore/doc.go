// Package etcdstore is roam's shared store: the objects, the generation
// counter, the change log and the audit log in etcd, under one key prefix,
// so that every roamd of a cluster commits to and watches the same state.
// It has the semantics of control.Store (see "Store contract" in
// control/doc.go) with its own small types, so that it does not depend on
// control; control.EtcdStore (control/store_etcd.go) adapts it to
// control.Store (Mutation converts as is, events travel as JSON through
// EventFunc and json.RawMessage).
//
// Invariants:
//
//   - Generations are consecutive: the commit based on generation g makes
//     g+1, in one etcd transaction conditional on the gen key (and on the
//     eventseq key when it carries an audit event), which writes the
//     objects, gen, the change record changes/<g+1> and the event
//     together, and trims the change log to the last MaxChanges. A stale
//     base writes nothing and returns a *ConflictError.
//   - Load reads gen and every object at one etcd revision.
//   - Watch reads the change log after its generation at one revision, then
//     follows etcd's watch from the next revision: every change once, in
//     order, whoever wrote it; a gap or an etcd compaction makes it read
//     the log again from the last change it delivered.
//   - A commit whose answer is lost is looked up once: found, it succeeded;
//     another writer's change in its place, a conflict; otherwise the error
//     says the outcome is unknown.
//   - The etcd server must accept transactions of a commit's size: etcd's
//     --max-txn-ops (default 128) bounds the distinct objects of one commit
//     (plus 6), --max-request-bytes (default 1.5 MiB) its size.
//
// Package etcdstore/etcdtest runs a real etcd server for tests.
package etcdstore
