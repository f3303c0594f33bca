package ami

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/ec2"
	packersdk "github.com/hashicorp/packer-plugin-sdk/packer"

	"github.com/bakery-sh/bakery/catalog"
	catalogami "github.com/bakery-sh/bakery/catalog/ami"
	"github.com/bakery-sh/bakery/internal/awsx"
	"github.com/bakery-sh/bakery/internal/progress"
	"github.com/bakery-sh/bakery/internal/steps"
	"github.com/bakery-sh/bakery/recipes"
)

// Result is a finished bake: one AMI per plan region.
type Result struct {
	// BakeID names the bake run (the bakery:bake-id tag).
	BakeID string `json:"bake_id"`
	// Images are the AMIs, build region first, then the copies in the
	// plan's order.
	Images []RegionImage `json:"images"`
}

// bakeState is what the build steps share. Every resource is recorded the
// moment AWS returns its id.
type bakeState struct {
	b       *Baker
	plan    *Plan
	m       *recipes.MachineImage
	rep     progress.Reporter
	bakeID  string
	created time.Time
	amiName string

	vpcID, subnetID string
	subnetPublic    bool // the subnet gives instances a public IP (MapPublicIpOnLaunch)

	key       *SSHKey
	keyName   string // set before ImportKeyPair: the name is ours alone
	keyPairID string // what ImportKeyPair returned (tags need the id)
	sgID      string

	instanceID string
	launched   time.Time // when RunInstances returned the builder's id
	publicIP   string
	privateIP  string
	comm       packersdk.Communicator

	mu     sync.Mutex
	images map[string]*RegionImage // by region: the build region's AMI and the copies
}

// image returns the AMI recorded for region, or nil.
func (st *bakeState) image(region string) *RegionImage {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.images[region]
}

// setImage records AMI id in region.
func (st *bakeState) setImage(region, id string) {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.images[region] = &RegionImage{Region: region, ImageID: id}
}

// setSnapshots records the snapshots of the AMI in region.
func (st *bakeState) setSnapshots(region string, ids []string) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if img := st.images[region]; img != nil {
		img.Snapshots = appendNew(img.Snapshots, ids...)
	}
}

// baseTags are the tags every resource of the bake carries from birth.
func (st *bakeState) baseTags() map[string]string {
	return map[string]string{
		catalog.TagBakeID:  st.bakeID,
		catalog.TagCreated: st.created.Format(time.RFC3339),
	}
}

// catalogTags are the tags of a finished AMI and its snapshots, except the
// bake key: the recipe's extra tags, then bakery's metadata (which wins).
func (st *bakeState) catalogTags() map[string]string {
	tags := map[string]string{}
	for k, v := range st.m.Tags {
		tags[k] = v
	}
	for k, v := range st.baseTags() {
		tags[k] = v
	}
	tags[catalog.TagRecipe] = st.plan.Recipe
	tags[catalog.TagArtifact] = st.plan.Artifact
	tags[catalog.TagVersion] = st.plan.Version
	tags[catalog.TagSourceAMI] = st.plan.SourceAMI
	if st.b.actor != "" {
		tags[catalog.TagCreatedBy] = truncateTag(st.b.actor)
	}
	return tags
}

// description is the AMI description; it names the bake run so that an
// AMI whose CreateImage or CopyImage answer was lost is still found.
func (st *bakeState) description() string {
	return fmt.Sprintf("bakery %s %s (%s), bake %s", st.plan.Recipe, st.plan.Version, st.plan.Artifact, st.bakeID)
}

// keep reports whether a failed bake keeps what it made.
func (st *bakeState) keep(failed bool) bool { return failed && st.b.onError == OnErrorAbort }

// Build bakes p: builder, provisioning, AMI, copies, sharing and catalog
// tags, as steps with Run and Cleanup. On success the builder, key pair
// and security group are gone and every AMI and snapshot carries the
// catalog tags, bake key last. On failure or cancellation the cleanups
// remove everything the bake created, in every region, on a fresh context
// bounded by the cleanup timeout; with OnErrorAbort they keep it and the
// error is an *AbortedError naming each resource.
func (b *Baker) Build(ctx context.Context, p *Plan) (*Result, error) {
	if p == nil || p.machine == nil {
		return nil, errors.New("building AMI: the plan was not made by Prepare")
	}
	m := p.machine
	if err := b.checkName(ctx, p); err != nil {
		return nil, err
	}
	st := &bakeState{
		b:       b,
		plan:    p,
		m:       m,
		rep:     progress.WithPrefix(progress.For(ctx, b.progress), m.Name+": "),
		bakeID:  b.bakeID(),
		created: b.now().UTC().Truncate(time.Second),
		images:  map[string]*RegionImage{},
	}
	st.amiName = m.AMIName
	switch {
	case st.amiName != "":
	case p.recipe != nil && p.recipe.VersionAuto:
		// EC2 refuses a second AMI of one name in a region: of two
		// runners that assigned the same version, one gets it.
		st.amiName = autoAMIName(p.Recipe, p.Artifact, p.Version)
	default:
		st.amiName = amiName(p.Recipe, p.Version, st.created)
	}

	list := []steps.Step[bakeState]{networkStep{}}
	if len(m.Provisioners) > 0 {
		list = append(list, keyPairStep{}, securityGroupStep{})
	}
	list = append(list, launchStep{})
	if len(m.Provisioners) > 0 {
		list = append(list, provisionStep{})
	}
	list = append(list, stopStep{}, createImageStep{}, tagImageStep{})
	if len(p.CopyRegions()) > 0 {
		list = append(list, copyStep{})
	}
	if len(m.ShareWith) > 0 {
		list = append(list, shareStep{})
	}
	if r := p.recipe; r != nil && r.Retain.DeprecateAfter > 0 {
		list = append(list, deprecateStep{})
	}
	list = append(list, completeStep{})

	hbctx, stopHeartbeat := context.WithCancel(ctx)
	go st.heartbeat(hbctx)
	err := steps.Run(ctx, steps.Runner{Progress: st.rep, CleanupTimeout: b.cleanupTimeout}, st, list...)
	stopHeartbeat()
	if err != nil {
		err = fmt.Errorf("baking AMI %s (bake %s): %w", m.Name, st.bakeID, err)
		if errors.Is(err, awsx.ErrTimeout) && b.onError == OnErrorCleanup && !steps.CleanupFailed(err) {
			err = fmt.Errorf("%w; the cleanup ran and removed what the bake had created (raise the limit in the recipe's timeouts block)", err)
		}
		if b.onError == OnErrorAbort {
			return nil, b.aborted(ctx, st, err)
		}
		return nil, err
	}
	res := &Result{BakeID: st.bakeID}
	for _, r := range p.Regions {
		if img := st.image(r); img != nil {
			res.Images = append(res.Images, *img)
		}
	}
	b.attachDocuments(ctx, st, res)
	return res, nil
}

// heartbeat refreshes TagHeartbeat on the bake's resources every
// heartbeat interval until ctx ends, so that a sweep, which judges age by
// the last sign of life, never takes a running bake's resources for
// orphans. It is best effort: a failed refresh waits for the next one.
func (st *bakeState) heartbeat(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-st.b.clock.After(st.b.heartbeatEvery):
		}
		beat := map[string]string{catalog.TagHeartbeat: st.b.clock.Now().UTC().Format(time.RFC3339)}
		// The resources are found by the bake's tag: the steps record
		// their ids without a lock, and one listing per kind and region
		// every few minutes is cheap.
		found, _ := st.b.bakeResources(ctx, st.bakeID, st.amiName, st.plan.Regions)
		byRegion := map[string][]string{}
		for _, r := range found {
			if r.Kind != KindKeyPair { // tagged by id below; Resource holds its name
				byRegion[r.Region] = appendNew(byRegion[r.Region], r.ID)
			}
		}
		st.mu.Lock()
		byRegion[st.plan.BuildRegion] = appendNew(byRegion[st.plan.BuildRegion], st.keyPairID)
		st.mu.Unlock()
		for r, ids := range byRegion {
			if len(ids) > 0 {
				_, _ = st.b.clients.EC2(r).CreateTags(ctx, &ec2.CreateTagsInput{Resources: ids, Tags: catalogami.EC2Tags(beat)})
			}
		}
	}
}

// AbortedError is a failed bake's error under OnErrorAbort: the
// resources it kept for debugging are listed in Kept, and Login says how
// to log in to the kept builder.
type AbortedError struct {
	// Err is the bake's error.
	Err error
	// BakeID is the bake run.
	BakeID string
	// Kept are the resources left in place.
	Kept []Resource
	// Login is the command that logs in to the kept builder over SSH
	// ("ssh -i FILE -p PORT USER@HOST"), empty when no builder with an
	// address and an SSH key was kept (a bake without provisioners has
	// no key).
	Login string
	// KeyFile is the file bakery wrote the builder's private SSH key to
	// (mode 0600), which Login names: the bake's own in-memory key
	// (NewSSHKey), saved as $BAKERY_HOME/keys/bakery-BAKEID (BAKERY_HOME
	// defaults to .bakery) because the builder is kept. Empty when the
	// recipe's ssh_private_key_file was used (Login names that file) or
	// nothing was written. Delete it with the builder.
	KeyFile string

	// listFailed is set when the kept resources could not all be listed.
	listFailed bool
}

// Error names the error, every kept resource and how to log in to the
// kept builder.
func (e *AbortedError) Error() string {
	var b strings.Builder
	b.WriteString(e.Err.Error())
	switch {
	case len(e.Kept) == 0 && e.listFailed:
		fmt.Fprintf(&b, "; on_error=abort kept what the bake had created, but it could not be listed: look for tag %s=%s", catalog.TagBakeID, e.BakeID)
		return b.String()
	case len(e.Kept) == 0:
		b.WriteString("; on_error=abort kept nothing: the bake had created no resource")
		return b.String()
	}
	fmt.Fprintf(&b, "; on_error=abort kept %d resources for debugging: ", len(e.Kept))
	for i, r := range e.Kept {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(r.String())
	}
	if e.Login != "" {
		fmt.Fprintf(&b, "; log in to the builder with: %s", e.Login)
	}
	fmt.Fprintf(&b, "; remove them once done, by hand or with `bakery sweep --yes` once they are older than its --older-than (they carry tag %s=%s)", catalog.TagBakeID, e.BakeID)
	if e.KeyFile != "" {
		fmt.Fprintf(&b, ", and delete the key file %s", e.KeyFile)
	}
	return b.String()
}

// Unwrap returns the bake's error.
func (e *AbortedError) Unwrap() error { return e.Err }

// aborted lists what the failed bake of st left behind, looking both at
// what it recorded and at what carries its bake id.
func (b *Baker) aborted(ctx context.Context, st *bakeState, err error) error {
	ctx, cancel := steps.CleanupContext(ctx, b.cleanupTimeout)
	defer cancel()
	kept, lerr := b.bakeResources(ctx, st.bakeID, st.amiName, st.plan.Regions)
	seen := map[string]bool{}
	for _, r := range kept {
		seen[r.Region+"/"+r.ID] = true
	}
	add := func(r Resource) {
		if r.ID != "" && !seen[r.Region+"/"+r.ID] {
			seen[r.Region+"/"+r.ID] = true
			kept = append(kept, r)
		}
	}
	br := st.plan.BuildRegion
	add(Resource{Kind: KindInstance, ID: st.instanceID, Region: br, BakeID: st.bakeID})
	add(Resource{Kind: KindSecurityGroup, ID: st.sgID, Region: br, BakeID: st.bakeID})
	st.mu.Lock()
	for _, img := range st.images {
		add(Resource{Kind: KindImage, ID: img.ImageID, Region: img.Region, BakeID: st.bakeID})
		for _, s := range img.Snapshots {
			add(Resource{Kind: KindSnapshot, ID: s, Region: img.Region, BakeID: st.bakeID, Image: img.ImageID})
		}
	}
	st.mu.Unlock()
	sortResources(kept, st.plan.Regions)
	if lerr != nil {
		err = errors.Join(err, fmt.Errorf("listing the kept resources: %w", lerr))
	}
	ae := &AbortedError{Err: err, BakeID: st.bakeID, Kept: kept, listFailed: lerr != nil}
	if slices.ContainsFunc(kept, func(r Resource) bool { return r.Kind == KindInstance }) {
		if werr := b.keepLogin(st, ae); werr != nil {
			ae.Err = errors.Join(ae.Err, werr)
		}
	}
	return ae
}

// keepLogin sets ae.Login, and ae.KeyFile when it has to write the key,
// for the builder that st's bake keeps: without them nobody could log in
// to it, since a bake's own key lives in memory only. It does nothing
// for a bake without an SSH key or a builder without an address.
func (b *Baker) keepLogin(st *bakeState, ae *AbortedError) error {
	if st.key == nil {
		return nil
	}
	host, err := sshAddress(st)
	if err != nil {
		return nil
	}
	keyFile := st.m.SSHPrivateKeyFile
	if keyFile == "" {
		home := b.getenv("BAKERY_HOME")
		if home == "" {
			home = ".bakery"
		}
		path, err := filepath.Abs(filepath.Join(home, "keys", "bakery-"+st.bakeID))
		if err != nil {
			return fmt.Errorf("saving the kept builder's SSH key: %w; nobody can log in to it, remove it", err)
		}
		if err := st.key.writePrivateKey(path, "bakery "+st.bakeID); err != nil {
			return fmt.Errorf("saving the kept builder's SSH key: %w; nobody can log in to it, remove it", err)
		}
		keyFile, ae.KeyFile = path, path
	}
	user := st.m.SSHUsername
	if user == "" {
		user = defaultSSHUsername
	}
	ae.Login = fmt.Sprintf("ssh -i %s -p %d %s@%s", shellWord(keyFile), sshPort(st.m), shellWord(user), host)
	return nil
}

// shellWord is s as one word of a POSIX shell command line: as is when
// it holds only characters no shell treats specially, else quoted.
func shellWord(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./:@%+,=") == "" {
		return s
	}
	return provQuote(s)
}

// bakeResources finds, in regions, every live resource of bake bakeID: by
// its tag, and AMIs also by name and description (a copy whose CopyImage
// answer was lost may not carry its tags yet).
func (b *Baker) bakeResources(ctx context.Context, bakeID, amiName string, regions []string) ([]Resource, error) {
	var (
		mu   sync.Mutex
		out  []Resource
		errs []error
		wg   sync.WaitGroup
	)
	for _, region := range regions {
		wg.Go(func() {
			rs, err := b.bakeResourcesIn(ctx, bakeID, amiName, region)
			mu.Lock()
			defer mu.Unlock()
			out = append(out, rs...)
			if err != nil {
				errs = append(errs, err)
			}
		})
	}
	wg.Wait()
	sortResources(out, regions)
	return out, errors.Join(errs...)
}

func (b *Baker) bakeResourcesIn(ctx context.Context, bakeID, amiName, region string) ([]Resource, error) {
	byTag := tagFilter(catalog.TagBakeID, bakeID)
	var out []Resource
	var errs []error
	collect := func(rs []Resource, err error) {
		out = append(out, rs...)
		if err != nil {
			errs = append(errs, err)
		}
	}
	collect(b.listInstances(ctx, region, byTag))
	collect(b.listSecurityGroups(ctx, region, byTag))
	collect(b.listKeyPairs(ctx, region, byTag))
	imgs, snaps, err := b.bakeImages(ctx, bakeID, amiName, region)
	if err != nil {
		errs = append(errs, err)
	}
	for _, img := range imgs {
		out = append(out, imageResource(img))
	}
	out = append(out, snaps...)
	return out, errors.Join(errs...)
}

// bakeImages finds the AMIs of bake bakeID in region and their snapshots:
// the AMIs tagged with the bake id or named amiName with the bake id in
// their description; the snapshots of those AMIs, those tagged with the
// bake id, and those whose description names one of the AMIs (EC2 writes
// "Created by CreateImage(i-...) for ami-..." and "Copied for
// DestinationAmi ami-..."), which finds a pending copy's snapshot before
// its id is known.
func (b *Baker) bakeImages(ctx context.Context, bakeID, amiName, region string, known ...string) ([]catalogami.Image, []Resource, error) {
	var errs []error
	tagged, err := b.store.List(ctx, region, tagFilter(catalog.TagBakeID, bakeID))
	if err != nil {
		errs = append(errs, err)
	}
	imgs := tagged
	if len(known) > 0 {
		recorded, err := b.store.List(ctx, region, filter("image-id", known...))
		if err != nil {
			errs = append(errs, err)
		}
		for _, img := range recorded {
			if !containsImage(imgs, img.ImageID) {
				imgs = append(imgs, img)
			}
		}
	}
	if amiName != "" {
		named, err := b.store.List(ctx, region, filter("name", amiName))
		if err != nil {
			errs = append(errs, err)
		}
		for _, img := range named {
			if img.BakeID != bakeID && strings.HasSuffix(img.Description, " bake "+bakeID) && !containsImage(imgs, img.ImageID) {
				img.BakeID = bakeID
				imgs = append(imgs, img)
			}
		}
	}
	seen := map[string]bool{}
	var snaps []Resource
	add := func(id, image string) {
		if !seen[id] {
			seen[id] = true
			snaps = append(snaps, Resource{Kind: KindSnapshot, ID: id, Region: region, BakeID: bakeID, Image: image})
		}
	}
	for _, img := range imgs {
		for _, s := range img.Snapshots {
			add(s, img.ImageID)
		}
	}
	taggedSnaps, err := b.listSnapshots(ctx, region, tagFilter(catalog.TagBakeID, bakeID))
	if err != nil {
		errs = append(errs, err)
	}
	for _, s := range taggedSnaps {
		add(s.ID, "")
	}
	ids := slices.Clone(known)
	for _, img := range imgs {
		ids = appendNew(ids, img.ImageID)
	}
	for _, id := range ids {
		described, err := b.listSnapshots(ctx, region, filter("description", "*"+id+"*"))
		if err != nil {
			errs = append(errs, err)
		}
		for _, s := range described {
			add(s.ID, id)
		}
	}
	return imgs, snaps, errors.Join(errs...)
}

func containsImage(imgs []catalogami.Image, id string) bool {
	return slices.ContainsFunc(imgs, func(img catalogami.Image) bool { return img.ImageID == id })
}

// kindOrder is the order resources are listed and removed in.
var kindOrder = map[Kind]int{KindInstance: 0, KindSecurityGroup: 1, KindKeyPair: 2, KindImage: 3, KindSnapshot: 4}

// sortResources orders rs by region (in the order of regions), kind and id.
func sortResources(rs []Resource, regions []string) {
	idx := map[string]int{}
	for i, r := range regions {
		if _, ok := idx[r]; !ok {
			idx[r] = i
		}
	}
	sort.SliceStable(rs, func(i, j int) bool {
		a, b := rs[i], rs[j]
		ai, aok := idx[a.Region]
		bi, bok := idx[b.Region]
		switch {
		case aok && bok && ai != bi:
			return ai < bi
		case aok != bok:
			return aok
		case a.Region != b.Region:
			return a.Region < b.Region
		case kindOrder[a.Kind] != kindOrder[b.Kind]:
			return kindOrder[a.Kind] < kindOrder[b.Kind]
		}
		return a.ID < b.ID
	})
}

// amiNameInvalid matches what an AMI name may not contain.
var amiNameInvalid = regexp.MustCompile(`[^a-zA-Z0-9()\[\] ./\-'@_]`)

// amiName is the default AMI name: RECIPE-VERSION-YYYYMMDDhhmmss, with
// characters EC2 refuses replaced by "-".
func amiName(recipe, version string, t time.Time) string {
	n := amiNameInvalid.ReplaceAllString(recipe+"-"+version, "-") + "-" + t.UTC().Format("20060102150405")
	if len(n) > 128 {
		n = n[len(n)-128:]
	}
	return n
}

// autoAMIName is the default AMI name of an auto-versioned recipe's
// artifact: RECIPE-VERSION (RECIPE-ARTIFACT-VERSION when the artifact is
// named otherwise), with no timestamp, so that the name claims the
// version in the build region (an auto version is never rebaked: --force
// assigns a new one).
func autoAMIName(recipe, artifact, version string) string {
	n := recipe + "-" + version
	if artifact != recipe {
		n = recipe + "-" + artifact + "-" + version
	}
	n = amiNameInvalid.ReplaceAllString(n, "-")
	if len(n) > 128 {
		n = n[len(n)-128:]
	}
	return n
}

// ErrAMINameTaken is the EC2 error code of a CreateImage whose name
// another AMI of the region holds.
const ErrAMINameTaken = "InvalidAMIName.Duplicate"

// sortedKeys returns the keys of m in order.
func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// closeComm closes the SSH connection when the communicator can.
func closeComm(c packersdk.Communicator) error {
	if cl, ok := c.(io.Closer); ok {
		return cl.Close()
	}
	return nil
}

// truncateTag cuts a tag value to EC2's 256 characters.
func truncateTag(v string) string {
	if r := []rune(v); len(r) > 256 {
		return string(r[:255]) + "…"
	}
	return v
}
