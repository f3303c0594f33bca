package oci

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"regexp"
	"sync"
	"time"

	"github.com/bakery-sh/bakery/catalog"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// rollbackLockTimeout bounds how long Rollback waits for the layout lock.
const rollbackLockTimeout = 30 * time.Second

// refNameRE is bakery's form of a layout ref name: NAME:TAG, where NAME may
// have slash-separated components and TAG follows the OCI tag grammar.
var refNameRE = regexp.MustCompile(`^[a-zA-Z0-9]+(?:[._/-]+[a-zA-Z0-9]+)*:[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$`)

// txState is where a transaction is in its life.
type txState int

const (
	txOpen txState = iota
	txCommitted
	txRolledBack
)

// change is one staged index.json edit: tag refName with desc, or untag it
// when desc is nil; with refName empty, attach desc (see Tx.attach).
type change struct {
	refName string
	desc    *v1.Descriptor
	// subject, when set, removes every descriptor without ref name whose
	// AnnotationSubject is it (see Tx.detachSubject).
	subject string
	// fresh: refName must not name another digest at commit (TagNew).
	fresh bool
}

// ErrTagTaken is returned, wrapped, by Commit when a name staged with
// TagNew names another image by then.
var ErrTagTaken = errors.New("the name is taken")

// Tx groups blob writes and index.json changes so that a failed or
// interrupted bake leaves the layout as it was. Blobs written through a Tx
// are complete but invisible until [Tx.Commit] rewrites index.json, the only
// moment the layout's visible state changes; [Tx.Rollback] removes the blobs
// the Tx created. Use it as:
//
//	tx := l.Begin()
//	defer tx.Rollback() // no-op after Commit
//	... tx.WriteImage(ctx, img); tx.Tag("hello:1.1.0", desc) ...
//	return tx.Commit(ctx)
//
// A Tx is safe for concurrent use.
type Tx struct {
	l *Layout

	mu       sync.Mutex
	state    txState
	created  []v1.Hash
	changes  []change
	tempDirs []string
}

// Begin starts a transaction on the layout.
func (l *Layout) Begin() *Tx { return &Tx{l: l} }

func (tx *Tx) record(hs ...v1.Hash) {
	tx.mu.Lock()
	tx.created = append(tx.created, hs...)
	tx.mu.Unlock()
}

func (tx *Tx) checkOpen(action string) error {
	tx.mu.Lock()
	defer tx.mu.Unlock()
	return tx.checkOpenLocked(action)
}

func (tx *Tx) checkOpenLocked(action string) error {
	switch tx.state {
	case txCommitted:
		return fmt.Errorf("%s: the layout transaction is already committed: begin a new one", action)
	case txRolledBack:
		return fmt.Errorf("%s: the layout transaction is rolled back: begin a new one", action)
	}
	return nil
}

// WriteBlob is [Layout.WriteBlob], recording a created blob for Rollback.
func (tx *Tx) WriteBlob(h v1.Hash, r io.Reader) (created bool, err error) {
	if err := tx.checkOpen("writing blob " + h.String()); err != nil {
		return false, err
	}
	created, err = tx.l.WriteBlob(h, r)
	if created {
		tx.record(h)
	}
	return created, err
}

// AdoptBlob is [Layout.AdoptBlob], recording a created blob for Rollback.
func (tx *Tx) AdoptBlob(h v1.Hash, tmpPath string) (created bool, err error) {
	if err := tx.checkOpen("adopting blob " + h.String()); err != nil {
		_ = os.Remove(tmpPath)
		return false, err
	}
	created, err = tx.l.AdoptBlob(h, tmpPath)
	if created {
		tx.record(h)
	}
	return created, err
}

// WriteImage is [Layout.WriteImage], recording created blobs for Rollback.
func (tx *Tx) WriteImage(ctx context.Context, img v1.Image) ([]v1.Hash, error) {
	if err := tx.checkOpen("writing image"); err != nil {
		return nil, err
	}
	created, err := tx.l.WriteImage(ctx, img)
	tx.record(created...)
	return created, err
}

// WriteIndex is [Layout.WriteIndex], recording created blobs for Rollback.
func (tx *Tx) WriteIndex(ctx context.Context, idx v1.ImageIndex) ([]v1.Hash, error) {
	if err := tx.checkOpen("writing index"); err != nil {
		return nil, err
	}
	created, err := tx.l.WriteIndex(ctx, idx)
	tx.record(created...)
	return created, err
}

// TempDir is [Layout.TempDir], except that the directory is removed when
// the transaction commits or rolls back.
func (tx *Tx) TempDir() (string, error) {
	if err := tx.checkOpen("creating staging directory"); err != nil {
		return "", err
	}
	d, err := tx.l.TempDir()
	if err != nil {
		return "", err
	}
	tx.mu.Lock()
	tx.tempDirs = append(tx.tempDirs, d)
	tx.mu.Unlock()
	return d, nil
}

// Created returns the digests of the blobs the transaction created so far.
func (tx *Tx) Created() []v1.Hash {
	tx.mu.Lock()
	defer tx.mu.Unlock()
	return append([]v1.Hash(nil), tx.created...)
}

// Tag stages tagging desc as refName ("NAME:TAG"): on Commit, index.json
// gets desc with the org.opencontainers.image.ref.name annotation set to
// refName (desc's other annotations are kept), replacing any descriptor
// that already carries that name. Nothing is visible before Commit.
// skopeo and other containers/image tools (`oci:DIR:NAME:TAG`) only find
// descriptors with OCI media types by name; Docker media types are stored
// but invisible to them.
func (tx *Tx) Tag(refName string, desc v1.Descriptor) error {
	action := fmt.Sprintf("tagging %s as %s", desc.Digest, refName)
	if !refNameRE.MatchString(refName) {
		return fmt.Errorf("%s: the name must look like NAME:TAG (e.g. hello:1.1.0)", action)
	}
	if err := checkHash(desc.Digest); err != nil {
		return fmt.Errorf("%s: %w", action, err)
	}
	if desc.MediaType == "" || desc.Size <= 0 {
		return fmt.Errorf("%s: the descriptor needs a media type and a size: build it with partial.Descriptor", action)
	}
	d := desc
	d.Annotations = maps.Clone(desc.Annotations)
	if d.Annotations == nil {
		d.Annotations = map[string]string{}
	}
	d.Annotations[catalog.AnnotationRefName] = refName
	tx.mu.Lock()
	defer tx.mu.Unlock()
	if err := tx.checkOpenLocked(action); err != nil {
		return err
	}
	tx.changes = append(tx.changes, change{refName: refName, desc: &d})
	return nil
}

// TagNew stages tagging desc as refName, as Tag does, on the condition
// that refName names no other image when the transaction commits: the
// check and the index.json update happen under the layout lock, so of
// two processes tagging one new name with different images exactly one
// succeeds; the other's Commit returns an error wrapping ErrTagTaken.
func (tx *Tx) TagNew(refName string, desc v1.Descriptor) error {
	if err := tx.Tag(refName, desc); err != nil {
		return err
	}
	tx.mu.Lock()
	defer tx.mu.Unlock()
	tx.changes[len(tx.changes)-1].fresh = true
	return nil
}

// Untag stages removing the descriptor tagged refName from index.json. The
// blobs stay; an absent name is not an error.
func (tx *Tx) Untag(refName string) error {
	tx.mu.Lock()
	defer tx.mu.Unlock()
	if err := tx.checkOpenLocked("untagging " + refName); err != nil {
		return err
	}
	tx.changes = append(tx.changes, change{refName: refName})
	return nil
}

// attach stages adding desc, without a ref name, to the layout's history
// file (bakery's event artifacts; see Layout.History), so that tools
// reading index.json see images only. A descriptor without ref name and
// with the same digest already there is kept as it is instead.
func (tx *Tx) attach(desc v1.Descriptor) error {
	action := "attaching " + desc.Digest.String()
	if err := checkHash(desc.Digest); err != nil {
		return fmt.Errorf("%s: %w", action, err)
	}
	if _, named := desc.Annotations[catalog.AnnotationRefName]; named || desc.MediaType == "" || desc.Size <= 0 {
		return fmt.Errorf("%s: the descriptor needs a media type, a size and no ref name", action)
	}
	d := desc
	d.Annotations = maps.Clone(desc.Annotations)
	tx.mu.Lock()
	defer tx.mu.Unlock()
	if err := tx.checkOpenLocked(action); err != nil {
		return err
	}
	tx.changes = append(tx.changes, change{desc: &d})
	return nil
}

// detachSubject stages removing from the history file (and from
// index.json, where older bakery versions listed them) every descriptor
// without a ref name whose AnnotationSubject is subject: the event
// artifacts of an image being removed.
func (tx *Tx) detachSubject(subject v1.Hash) error {
	if err := checkHash(subject); err != nil {
		return fmt.Errorf("detaching the events of %s: %w", subject, err)
	}
	tx.mu.Lock()
	defer tx.mu.Unlock()
	if err := tx.checkOpenLocked("detaching the events of " + subject.String()); err != nil {
		return err
	}
	tx.changes = append(tx.changes, change{subject: subject.String()})
	return nil
}

// Commit makes the staged tags visible. Holding the layout lock, it checks
// that every blob the tagged descriptors reference is present, re-reads
// index.json (another process may have committed meanwhile), applies the
// staged changes in order, keeping every other descriptor as it is, and
// replaces index.json atomically. Staged events go to the history file the
// same way, just before (see Layout.writeChanges). If Commit fails, the
// images are unchanged and the transaction stays open: Rollback it.
func (tx *Tx) Commit(ctx context.Context) error {
	return tx.commit(ctx, false)
}

// commitLocked is Commit for a caller that already holds the layout lock
// (see Layout.Lock), so that what it read under the lock and the changes
// it staged are one atomic step.
func (tx *Tx) commitLocked(ctx context.Context) error {
	return tx.commit(ctx, true)
}

func (tx *Tx) commit(ctx context.Context, locked bool) error {
	tx.mu.Lock()
	defer tx.mu.Unlock()
	if err := tx.checkOpenLocked("committing to layout " + tx.l.dir); err != nil {
		return err
	}
	if len(tx.changes) > 0 {
		if !locked {
			unlock, err := tx.l.Lock(ctx)
			if err != nil {
				return fmt.Errorf("committing to layout: %w", err)
			}
			defer unlock()
		}
		for _, c := range tx.changes {
			if c.desc == nil {
				continue
			}
			if c.fresh {
				d, err := tx.l.Find(c.refName)
				if err != nil {
					return fmt.Errorf("committing %s to layout %s: %w", c.refName, tx.l.dir, err)
				}
				if d != nil && d.Digest != c.desc.Digest {
					return fmt.Errorf("committing %s to layout %s: %w: it names %s since this transaction began", c.refName, tx.l.dir, ErrTagTaken, d.Digest)
				}
			}
			if err := tx.l.checkComplete(ctx, *c.desc); err != nil {
				return fmt.Errorf("committing %s to layout %s: %w", cmp.Or(c.refName, c.desc.Digest.String()), tx.l.dir, err)
			}
		}
		if err := tx.l.writeChanges(tx.changes); err != nil {
			return err
		}
	}
	tx.state = txCommitted
	tx.removeTempDirsLocked()
	return nil
}

// Rollback removes the staging directories and the blobs the transaction
// created, except those that index.json references by now (another
// process may have committed an image sharing them). It waits up to 30s for
// the layout lock. It is a no-op after Commit or a previous Rollback, so it
// can be deferred.
func (tx *Tx) Rollback() error {
	tx.mu.Lock()
	defer tx.mu.Unlock()
	if tx.state != txOpen {
		return nil
	}
	tx.state = txRolledBack
	tx.removeTempDirsLocked()
	if len(tx.created) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), rollbackLockTimeout)
	defer cancel()
	unlock, err := tx.l.Lock(ctx)
	if err != nil {
		return fmt.Errorf("rolling back: %w (%d unreferenced blobs stay in %s)", err, len(tx.created), tx.l.blobDir())
	}
	defer unlock()
	keep := tx.l.referenced(ctx)
	var errs []error
	for _, h := range tx.created {
		if keep[h] {
			continue
		}
		p := tx.l.BlobPath(h)
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, fileError("rolling back: removing", p, err))
		}
	}
	syncDir(tx.l.blobDir())
	return errors.Join(errs...)
}

func (tx *Tx) removeTempDirsLocked() {
	for _, d := range tx.tempDirs {
		_ = os.RemoveAll(d)
	}
	tx.tempDirs = nil
}

// checkComplete verifies that desc's blob and every blob it references are
// in the layout, and that desc's size matches its blob.
func (l *Layout) checkComplete(ctx context.Context, desc v1.Descriptor) error {
	fi, err := os.Stat(l.BlobPath(desc.Digest))
	if err != nil {
		return fmt.Errorf("blob %s is missing (%w): write the image first; if it was, a concurrent rollback removed it: retry", desc.Digest, err)
	}
	if fi.Size() != desc.Size {
		return fmt.Errorf("descriptor of %s says %d bytes but the blob has %d: build the descriptor with partial.Descriptor", desc.Digest, desc.Size, fi.Size())
	}
	blobs := map[v1.Hash]v1.Descriptor{}
	if err := collect(ctx, desc, nil, l.fetchManifest, blobs); err != nil {
		return fmt.Errorf("the image is incomplete: %w: write it again and retry", err)
	}
	for h, d := range blobs {
		if !d.MediaType.IsDistributable() {
			continue
		}
		has, err := l.HasBlob(h)
		if err != nil {
			return err
		}
		if !has {
			return fmt.Errorf("the image is incomplete: blob %s (%s) is missing: write the image again; if it was, a concurrent rollback removed it: retry", h, d.MediaType)
		}
	}
	return nil
}

// referenced returns every blob reachable from index.json and the history
// file. Damaged entries are skipped: this only decides what Rollback must
// keep.
func (l *Layout) referenced(ctx context.Context) map[v1.Hash]bool {
	keep := map[v1.Hash]bool{}
	descs, err := l.allDescriptors()
	if err != nil {
		return keep
	}
	blobs := map[v1.Hash]v1.Descriptor{}
	for _, d := range descs {
		_ = collect(ctx, d, nil, l.fetchManifest, blobs)
	}
	for h := range blobs {
		keep[h] = true
	}
	return keep
}

// writeChanges applies changes to the layout's files: events (attach,
// and detach) to the history file, tags to index.json (and detach too,
// for events an older bakery listed there). Event entries still in
// index.json are moved to the history file on the way. The history file
// is replaced first, then index.json, each atomically: an interruption
// between the two leaves an event recorded whose tag change is not made
// yet, which the operation finishes when run again. The caller holds the
// lock.
func (l *Layout) writeChanges(changes []change) error {
	var toIndex, toHistory []change
	for _, c := range changes {
		switch {
		case c.subject != "":
			toIndex = append(toIndex, c)
			toHistory = append(toHistory, c)
		case c.refName == "" && c.desc != nil:
			toHistory = append(toHistory, c)
		default:
			toIndex = append(toIndex, c)
		}
	}
	ipath, hpath := l.path(indexFile), l.path(historyFile)
	iraw, err := os.ReadFile(ipath)
	if err != nil {
		return fileError("committing to layout: reading", ipath, err)
	}
	moved, err := legacyEvents(iraw)
	if err != nil {
		return fmt.Errorf("committing to layout: %s: %w: restore it from a backup", ipath, err)
	}
	if len(moved) > 0 {
		// Attach first, so that a detach in this commit applies to them.
		pre := make([]change, 0, len(moved)+len(toHistory))
		for _, d := range moved {
			pre = append(pre, change{desc: &d})
			toIndex = append(toIndex, change{subject: d.Annotations[AnnotationSubject]})
		}
		toHistory = append(pre, toHistory...)
	}
	if len(toHistory) > 0 {
		hraw, err := os.ReadFile(hpath)
		if errors.Is(err, fs.ErrNotExist) {
			hraw, err = []byte(emptyIndex), nil
		}
		if err != nil {
			return fileError("committing to layout: reading", hpath, err)
		}
		updated, err := applyChanges(hraw, toHistory)
		if err != nil {
			return fmt.Errorf("committing to layout: %s: %w: restore it from a backup", hpath, err)
		}
		if _, err := writeFileAtomic(hpath, updated, true); err != nil {
			return fmt.Errorf("committing to layout: %w", err)
		}
	}
	if len(toIndex) > 0 {
		updated, err := applyChanges(iraw, toIndex)
		if err != nil {
			return fmt.Errorf("committing to layout: %s: %w: restore it from a backup", ipath, err)
		}
		if _, err := writeFileAtomic(ipath, updated, true); err != nil {
			return fmt.Errorf("committing to layout: %w", err)
		}
	}
	return nil
}

// legacyEvents returns the event entries a raw index.json lists (older
// bakery versions kept the history there).
func legacyEvents(raw []byte) ([]v1.Descriptor, error) {
	var im v1.IndexManifest
	if err := json.Unmarshal(raw, &im); err != nil {
		return nil, fmt.Errorf("parsing the index: %w", err)
	}
	var evs []v1.Descriptor
	for _, d := range im.Manifests {
		if isEventEntry(d) {
			evs = append(evs, d)
		}
	}
	return evs, nil
}

// applyChanges edits a raw index.json, touching only the descriptors the
// changes name: every other descriptor keeps its bytes, including fields
// this package does not know.
func applyChanges(raw []byte, changes []change) ([]byte, error) {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(raw, &top); err != nil {
		return nil, fmt.Errorf("parsing the index: %w", err)
	}
	var manifests []json.RawMessage
	if m, ok := top["manifests"]; ok {
		if err := json.Unmarshal(m, &manifests); err != nil {
			return nil, fmt.Errorf("parsing the index's manifests: %w", err)
		}
	}
	for _, c := range changes {
		var entry json.RawMessage
		if c.desc != nil {
			b, err := json.Marshal(c.desc)
			if err != nil {
				return nil, fmt.Errorf("encoding descriptor for %s: %w", cmp.Or(c.refName, c.desc.Digest.String()), err)
			}
			entry = b
		}
		out := make([]json.RawMessage, 0, len(manifests)+1)
		placed := false
		for _, m := range manifests {
			var d struct {
				Digest      string            `json:"digest"`
				Annotations map[string]string `json:"annotations"`
			}
			if err := json.Unmarshal(m, &d); err != nil {
				return nil, fmt.Errorf("parsing a descriptor of the index: %w", err)
			}
			name, named := d.Annotations[catalog.AnnotationRefName]
			if c.subject != "" {
				if named || d.Annotations[AnnotationSubject] != c.subject {
					out = append(out, m)
				}
				continue
			}
			if c.refName == "" {
				// attach: keep an unnamed descriptor of the same digest.
				if !named && d.Digest == c.desc.Digest.String() {
					placed = true
				}
				out = append(out, m)
				continue
			}
			if name != c.refName {
				out = append(out, m)
				continue
			}
			// Replace the first descriptor carrying the name in place,
			// drop any others.
			if !placed && entry != nil {
				out = append(out, entry)
			}
			placed = true
		}
		if !placed && entry != nil {
			out = append(out, entry)
		}
		manifests = out
	}
	if manifests == nil {
		manifests = []json.RawMessage{}
	}
	mb, err := json.Marshal(manifests)
	if err != nil {
		return nil, fmt.Errorf("encoding the index: %w", err)
	}
	top["manifests"] = mb
	if _, ok := top["schemaVersion"]; !ok {
		top["schemaVersion"] = json.RawMessage(`2`)
	}
	if _, ok := top["mediaType"]; !ok {
		top["mediaType"] = json.RawMessage(`"` + string(types.OCIImageIndex) + `"`)
	}
	b, err := json.MarshalIndent(top, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encoding the index: %w", err)
	}
	return append(b, '\n'), nil
}
