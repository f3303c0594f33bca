package ledger

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/bakery-sh/bakery/internal/awsx"
)

// Lease is a lock on one stage of one recipe, held until Expires unless
// renewed. It is the body of the lock object (holder, acquired, expires,
// purpose) and what the Ledger needs to change it only while it is still
// the same lease (its ETag).
type Lease struct {
	// Holder is who holds the lock: the runner's identity, host and
	// process.
	Holder string `json:"holder"`
	// Acquired is when the holder took the lock.
	Acquired time.Time `json:"acquired"`
	// Expires is when the lease runs out unless renewed; after it
	// another runner may take the lock over.
	Expires time.Time `json:"expires"`
	// Purpose says what the holder is doing ("promote web@1.4.2 to prod").
	Purpose string `json:"purpose,omitempty"`
	// Recipe and Stage name the lock (the object's key, not its body).
	Recipe string `json:"-"`
	Stage  string `json:"-"`
	// Replaced is the expired lease this one took over; nil when the
	// lock was free.
	Replaced *Lease `json:"-"`

	etag string
}

// String describes the lease for messages: HOLDER since TIME (PURPOSE),
// until TIME.
func (le *Lease) String() string {
	s := fmt.Sprintf("%s since %s", le.Holder, formatTime(le.Acquired))
	if le.Purpose != "" {
		s += " (" + le.Purpose + ")"
	}
	return s + ", until " + formatTime(le.Expires)
}

// LockedError is returned by Acquire when another runner holds the lock
// and its lease has not expired.
type LockedError struct {
	// Recipe and Stage name the lock.
	Recipe, Stage string
	// Lease is the lease that holds it.
	Lease Lease
}

// Error names the holder, since when and until when the lock is held,
// and what to do.
func (e *LockedError) Error() string {
	return fmt.Sprintf("stage %s of %s is locked by %s: wait for it to finish (or its lease to expire), or, if that runner is gone, run again with --break-lock",
		e.Stage, e.Recipe, e.Lease.String())
}

// ErrLeaseLost is returned, wrapped, by Renew and Release when the lease
// is no longer the lock's: it was broken, or it expired and another
// runner took it over.
var ErrLeaseLost = errors.New("the lease was lost")

// checkStage reports whether stage can be part of an object key.
func checkStage(stage string) error {
	if stage == "" || strings.ContainsAny(stage, "/\\") || stage == "." || stage == ".." {
		return fmt.Errorf("%q is not a stage name", stage)
	}
	return nil
}

// lockKey is the key of the lock on recipe's stage.
func (l *Ledger) lockKey(recipe, stage string) string {
	return l.key(recipe, "locks", stage+".json")
}

// maxAcquireRounds bounds how many times Acquire reads and writes the
// lock object while other runners keep changing it.
const maxAcquireRounds = 5

// Acquire takes the lock on recipe's stage for holder, for the ledger's
// lease TTL (WithLeaseTTL): it creates the lock object if there is none
// (If-None-Match: *), or takes over an expired lease (If-Match: its
// ETag; the new lease's Replaced says whose it was). A lease held and not
// expired makes it return a *LockedError. Of runners racing for the same
// lock, exactly one gets it.
func (l *Ledger) Acquire(ctx context.Context, recipe, stage, holder, purpose string) (*Lease, error) {
	what := fmt.Sprintf("locking stage %s of %s in %s", stage, recipe, l)
	if err := checkRecipe(recipe); err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	if err := checkStage(stage); err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	if strings.TrimSpace(holder) == "" {
		return nil, fmt.Errorf("%s: the holder is empty: name who takes the lock", what)
	}
	key := l.lockKey(recipe, stage)
	for range maxAcquireRounds {
		now := l.o.now().UTC()
		le := &Lease{Holder: holder, Acquired: now, Expires: now.Add(l.o.ttl), Purpose: purpose, Recipe: recipe, Stage: stage}
		err := l.put(ctx, key, le, "")
		if err == nil {
			return le, nil
		}
		if !isPreconditionFailed(err) && !isConflict(err) {
			return nil, fmt.Errorf("%s: %w", what, awsx.ExplainError(err))
		}
		cur, err := l.read(ctx, recipe, stage)
		switch {
		case awsx.IsNotFound(err):
			continue // released in between: try again
		case err != nil:
			return nil, fmt.Errorf("%s: %w", what, err)
		case cur.Expires.After(now):
			return nil, &LockedError{Recipe: recipe, Stage: stage, Lease: *cur}
		}
		le.Replaced = cur
		err = l.put(ctx, key, le, cur.etag)
		switch {
		case err == nil:
			return le, nil
		case isPreconditionFailed(err), isConflict(err), awsx.IsNotFound(err):
			continue // another runner changed it first: look again
		default:
			return nil, fmt.Errorf("%s: taking over the expired lease of %s: %w", what, cur, awsx.ExplainError(err))
		}
	}
	return nil, fmt.Errorf("%s: the lock changed hands %d times while bakery tried to take it: try again", what, maxAcquireRounds)
}

// Renew extends le, which must still be the lock's, to the ledger's
// lease TTL from now, and returns the renewed lease (le is unchanged).
// It returns an error wrapping ErrLeaseLost when le was broken or taken
// over.
func (l *Ledger) Renew(ctx context.Context, le *Lease) (*Lease, error) {
	what := fmt.Sprintf("renewing the lock on stage %s of %s in %s", le.Stage, le.Recipe, l)
	next := *le
	next.Replaced = nil
	next.Expires = l.o.now().UTC().Add(l.o.ttl)
	err := l.put(ctx, l.lockKey(le.Recipe, le.Stage), &next, le.etag)
	switch {
	case err == nil:
		return &next, nil
	case isPreconditionFailed(err), awsx.IsNotFound(err), isConflict(err):
		return nil, fmt.Errorf("%s: %w: %s", what, ErrLeaseLost, l.holderNow(ctx, le.Recipe, le.Stage))
	}
	return nil, fmt.Errorf("%s: %w", what, awsx.ExplainError(err))
}

// Release gives up le: it deletes the lock object if it is still le (the
// same holder and ETag), with a conditional delete (If-Match: ETag). It
// returns an error wrapping ErrLeaseLost, and deletes nothing, when le was
// broken or taken over in the meantime.
func (l *Ledger) Release(ctx context.Context, le *Lease) error {
	what := fmt.Sprintf("releasing the lock on stage %s of %s in %s", le.Stage, le.Recipe, l)
	cur, err := l.read(ctx, le.Recipe, le.Stage)
	switch {
	case awsx.IsNotFound(err):
		return fmt.Errorf("%s: %w: someone broke it", what, ErrLeaseLost)
	case err != nil:
		return fmt.Errorf("%s: %w", what, err)
	case cur.Holder != le.Holder || cur.etag != le.etag:
		return fmt.Errorf("%s: %w: it is now held by %s", what, ErrLeaseLost, cur)
	}
	_, err = l.client.DeleteObject(ctx, &s3.DeleteObjectInput{
		Bucket:  aws.String(l.bucket),
		Key:     aws.String(l.lockKey(le.Recipe, le.Stage)),
		IfMatch: aws.String(le.etag),
	})
	switch {
	case err == nil:
		return nil
	case isPreconditionFailed(err), awsx.IsNotFound(err), isConflict(err):
		return fmt.Errorf("%s: %w: %s", what, ErrLeaseLost, l.holderNow(ctx, le.Recipe, le.Stage))
	}
	return fmt.Errorf("%s: %w", what, awsx.ExplainError(err))
}

// Break deletes the lease on recipe's stage, whoever holds it, and
// returns it (nil when the lock was free). Use it when the holder is
// gone and its lease has not expired yet: the holder, if it is still at
// work, learns that it lost the lock only when it renews or releases it.
func (l *Ledger) Break(ctx context.Context, recipe, stage string) (*Lease, error) {
	what := fmt.Sprintf("breaking the lock on stage %s of %s in %s", stage, recipe, l)
	if err := checkRecipe(recipe); err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	if err := checkStage(stage); err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	for range maxAcquireRounds {
		cur, err := l.read(ctx, recipe, stage)
		var bad *badLeaseError
		switch {
		case awsx.IsNotFound(err):
			return nil, nil
		case errors.As(err, &bad):
			cur = &Lease{Holder: "an unreadable lease", Recipe: recipe, Stage: stage, etag: bad.etag}
		case err != nil:
			return nil, fmt.Errorf("%s: %w", what, err)
		}
		// If-Match: a lease taken between the read and the delete is
		// not broken unseen.
		_, err = l.client.DeleteObject(ctx, &s3.DeleteObjectInput{
			Bucket:  aws.String(l.bucket),
			Key:     aws.String(l.lockKey(recipe, stage)),
			IfMatch: aws.String(cur.etag),
		})
		switch {
		case err == nil:
			return cur, nil
		case isPreconditionFailed(err), awsx.IsNotFound(err), isConflict(err):
			continue
		}
		return nil, fmt.Errorf("%s: %w", what, awsx.ExplainError(err))
	}
	return nil, fmt.Errorf("%s: the lock changed hands %d times while bakery tried to break it: try again", what, maxAcquireRounds)
}

// Holder returns the lease on recipe's stage, nil when the lock is free.
func (l *Ledger) Holder(ctx context.Context, recipe, stage string) (*Lease, error) {
	cur, err := l.read(ctx, recipe, stage)
	if awsx.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading the lock on stage %s of %s in %s: %w", stage, recipe, l, err)
	}
	return cur, nil
}

// holderNow describes who holds the lock now, for a lost lease's message.
func (l *Ledger) holderNow(ctx context.Context, recipe, stage string) string {
	cur, err := l.read(ctx, recipe, stage)
	switch {
	case awsx.IsNotFound(err):
		return "someone broke it"
	case err != nil:
		return "it changed"
	}
	return "it is now held by " + cur.String()
}

// badLeaseError is a lock object that does not decode as a lease.
type badLeaseError struct {
	key, etag string
	err       error
}

func (e *badLeaseError) Error() string {
	return fmt.Sprintf("lock object %s is not a lease (%v): break the lock with --break-lock", e.key, e.err)
}

// read returns the lease on recipe's stage. A missing lock is an error
// for which awsx.IsNotFound is true.
func (l *Ledger) read(ctx context.Context, recipe, stage string) (*Lease, error) {
	key := l.lockKey(recipe, stage)
	body, etag, err := l.get(ctx, key)
	if err != nil {
		return nil, err
	}
	var le Lease
	if err := json.Unmarshal(body, &le); err != nil || le.Holder == "" {
		if err == nil {
			err = errors.New("it names no holder")
		}
		return nil, &badLeaseError{key: "s3://" + l.bucket + "/" + key, etag: etag, err: err}
	}
	le.Recipe, le.Stage, le.etag = recipe, stage, etag
	le.Acquired, le.Expires = le.Acquired.UTC(), le.Expires.UTC()
	return &le, nil
}

// put writes le to key: only if there is no object when ifMatch is
// empty, else only if the object's ETag is ifMatch. It sets le's ETag.
func (l *Ledger) put(ctx context.Context, key string, le *Lease, ifMatch string) error {
	body, err := json.Marshal(le)
	if err != nil {
		return err
	}
	in := &s3.PutObjectInput{
		Bucket:            aws.String(l.bucket),
		Key:               aws.String(key),
		Body:              bytes.NewReader(body),
		ContentType:       aws.String("application/json"),
		ChecksumAlgorithm: s3types.ChecksumAlgorithmSha256, // Object Lock needs one
	}
	if ifMatch == "" {
		in.IfNoneMatch = aws.String("*")
	} else {
		in.IfMatch = aws.String(ifMatch)
	}
	out, err := l.client.PutObject(ctx, in)
	if err != nil {
		return err
	}
	le.etag = aws.ToString(out.ETag)
	return nil
}
