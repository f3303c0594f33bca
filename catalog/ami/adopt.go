package ami

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/bakery-sh/bakery/catalog"
	"github.com/bakery-sh/bakery/internal/awsx"
)

// RegionAMI names one AMI: its region and id.
type RegionAMI struct {
	// Region is the AWS region the AMI is in.
	Region string `json:"region"`
	// ImageID is the AMI id.
	ImageID string `json:"image_id"`
}

// String returns REGION:AMI, as Packer's manifests write it.
func (r RegionAMI) String() string { return r.Region + ":" + r.ImageID }

// Adoption is a set of AMIs that bakery did not bake, one per region, to
// take into the catalog as one version of the store's artifact (see
// LifecycleStore.Adopt).
type Adoption struct {
	// Version is the recipe version the AMIs become.
	Version string
	// AMIs are the AMIs, at most one per region.
	AMIs []RegionAMI
	// Created is when the AMIs were made (a Packer manifest's
	// build_time), written as catalog.TagCreated. Zero: the oldest of
	// the AMIs' creation dates.
	Created time.Time
	// CreatedBy is who made them (catalog.TagCreatedBy), the actor of
	// the version's bake event; empty when unknown.
	CreatedBy string
	// Actor is who adopts them.
	Actor string
	// Reason says where the AMIs came from (the Packer build and run);
	// it is the reason of the adopt event.
	Reason string
	// Tags are the machine_image's own tags, written as a bake writes
	// them: bakery's catalog tags win over them.
	Tags map[string]string
	// Stages is how many stages the recipe has: each may add a stage
	// mark later, so the AMI must have room for them under EC2's tag
	// limit (see catalog.MaxAMITags).
	Stages int
}

// Adopted is what Adopt did.
type Adopted struct {
	// Ref is the version the AMIs are now.
	catalog.Ref
	// Artifact is the machine_image block.
	Artifact string `json:"artifact"`
	// AMIs are the adopted AMIs, by region.
	AMIs []RegionAMI `json:"amis"`
	// Time and Actor are the adoption's (an earlier run's when it was
	// done already).
	Time  time.Time `json:"time"`
	Actor string    `json:"actor"`
	// Changed is false when every AMI carried the version's tags already
	// (the same adoption ran before), true when Adopt wrote tags.
	Changed bool `json:"changed"`
	// Tagged counts the AMIs and snapshots Adopt wrote tags on.
	Tagged int `json:"tagged"`
}

// amiID matches an AMI id.
var amiID = regexp.MustCompile(`^ami-[0-9a-f]{8,17}$`)

// ParseRegionAMI reads REGION:ami-ID.
func ParseRegionAMI(s string) (RegionAMI, error) {
	region, id, ok := strings.Cut(strings.TrimSpace(s), ":")
	r := RegionAMI{Region: strings.TrimSpace(region), ImageID: strings.TrimSpace(id)}
	if !ok || r.Region == "" || !amiID.MatchString(r.ImageID) {
		return RegionAMI{}, fmt.Errorf("%q is not REGION:AMI-ID: write it as, for example, us-east-1:ami-0123456789abcdef0", s)
	}
	return r, nil
}

// adoptee is one AMI of an adoption, as read before anything changes.
type adoptee struct {
	located
	// tags and snapTags are what to write on the AMI and each snapshot
	// (only what differs from what they carry).
	tags     map[string]string
	snapTags map[string]map[string]string
}

// Adopt takes the AMIs of a, which bakery did not bake (Packer made
// them), into the catalog as version a.Version of the store's artifact:
// it tags every AMI and its snapshots as a bake does (recipe, artifact,
// version, creation time and the machine_image's tags), with the bake
// key catalog.BakeKeyUnknown (so that no bake takes the version for up
// to date) and TagAdopted (when, by whom, from where). From then on
// promote, launch and retire treat it as any other version.
//
// Everything is checked before anything changes: each AMI exists in its
// region, is available and is owned by this account; none is a version
// of another recipe, artifact or version; the version does not exist yet
// (unless it is this same adoption, run again: then Adopt finishes what
// is missing and changes nothing else, keeping the first run's time);
// and every tag fits EC2's limits with room for the recipe's stages and
// some history. If a write fails, the tags already written are taken
// away again (each resource put back as it was) and the error says so.
// With a journal (WithJournal) the adopt event goes to it first.
func (s *LifecycleStore) Adopt(ctx context.Context, a Adoption) (*Adopted, error) {
	what := fmt.Sprintf("adopting %s as %s", amiList(a.AMIs), s.ref(a.Version))
	if err := checkAdoption(a); err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	amis := slices.Clone(a.AMIs)
	slices.SortFunc(amis, func(x, y RegionAMI) int { return strings.Compare(x.Region, y.Region) })
	amis = slices.Compact(amis)

	ls := make([]*located, len(amis))
	for i, r := range amis {
		l, err := s.describeAdoptee(ctx, r, a.Version)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
		ls[i] = l
	}
	if err := s.checkVersionFree(ctx, a.Version, ls); err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	if err := s.each(ctx, ls, s.readSnapshots); err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}

	// The first run's mark and creation time, when it ran before.
	m, adoptedBefore := adoptedOf(images(ls))
	if !adoptedBefore {
		m = mark{Time: s.o.now().UTC(), Actor: a.Actor, Reason: a.Reason}
	}
	created := cmp.Or(createdOf(a, ls, adoptedBefore), m.Time).UTC().Truncate(time.Second)
	want := map[string]string{}
	maps.Copy(want, a.Tags)
	want[catalog.TagRecipe] = s.recipe
	want[catalog.TagArtifact] = s.artifact
	want[catalog.TagVersion] = a.Version
	want[catalog.TagBakeKey] = catalog.BakeKeyUnknown
	want[catalog.TagCreated] = created.UTC().Format(time.RFC3339)
	want[TagAdopted] = m.String()
	if a.CreatedBy != "" {
		want[catalog.TagCreatedBy] = truncate(a.CreatedBy, MaxTagValue)
	}

	// Every tag of every region is checked before the first is written.
	var toTag []*adoptee
	for _, l := range ls {
		ad, err := planAdoption(l, want, a.Stages)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
		toTag = append(toTag, ad)
	}
	res := &Adopted{Ref: catalog.Ref{Recipe: s.recipe, Version: a.Version}, Artifact: s.artifact, AMIs: amis, Time: m.Time, Actor: m.Actor}
	for _, ad := range toTag {
		if len(ad.tags) > 0 || len(ad.snapTags) > 0 {
			res.Changed = true
		}
	}
	if !res.Changed {
		return res, nil
	}
	if j := s.o.journal; j != nil {
		ev := catalog.Event{Time: m.Time, Action: catalog.ActionAdopt, Recipe: s.recipe, Version: a.Version, Artifact: s.artifact,
			Kind: Kind, Actor: m.Actor, Reason: m.Reason}
		if err := j.Append(ctx, ev); err != nil {
			return nil, fmt.Errorf("%s: recording the adopt event in the ledger: %w", what, err)
		}
	}
	var done []undo
	for _, ad := range toTag {
		n, err := s.writeAdoption(ctx, ad, &done)
		res.Tagged += n
		if err != nil {
			if rerr := s.rollback(ctx, done); rerr != nil {
				return nil, fmt.Errorf("%s: %w; putting back the tags already written failed too: %v: run the same adopt again to finish it", what, err, rerr)
			}
			return nil, fmt.Errorf("%s: %w (the tags already written were removed again: nothing changed; run it again once the cause is fixed)", what, err)
		}
	}
	return res, nil
}

// createdOf is the creation time to write on ls: the first run's when
// the adoption ran before (a region added since gets the same), else
// a.Created, else the oldest of the AMIs' creation dates (the build
// region's, which the others were copied from); zero when none is known.
func createdOf(a Adoption, ls []*located, adoptedBefore bool) time.Time {
	if adoptedBefore {
		for _, l := range ls {
			if t, err := time.Parse(time.RFC3339, l.Tags[catalog.TagCreated]); err == nil {
				return t
			}
		}
	}
	if !a.Created.IsZero() {
		return a.Created
	}
	var oldest time.Time
	for _, l := range ls {
		if !l.CreationDate.IsZero() && (oldest.IsZero() || l.CreationDate.Before(oldest)) {
			oldest = l.CreationDate
		}
	}
	return oldest
}

// checkAdoption checks a's own fields.
func checkAdoption(a Adoption) error {
	if err := checkVersionName(a.Version); err != nil {
		return err
	}
	if len(a.AMIs) == 0 {
		return errors.New("no AMI to adopt: name them with --ami REGION:AMI-ID or a Packer manifest")
	}
	byRegion := map[string]string{}
	for _, r := range a.AMIs {
		if r.Region == "" || !amiID.MatchString(r.ImageID) {
			return fmt.Errorf("%q is not REGION:AMI-ID", r.String())
		}
		if id, ok := byRegion[r.Region]; ok && id != r.ImageID {
			return fmt.Errorf("two AMIs in %s (%s and %s): a version has one AMI per region; adopt the other as another version", r.Region, id, r.ImageID)
		}
		byRegion[r.Region] = r.ImageID
	}
	return nil
}

// checkVersionName reports whether v can be a version tag.
func checkVersionName(v string) error {
	switch {
	case v == "":
		return errors.New("no version: name one with --version")
	case !utf8.ValidString(v) || utf8.RuneCountInString(v) > MaxTagValue:
		return fmt.Errorf("version %q is not valid UTF-8 of at most %d characters", v, MaxTagValue)
	case strings.ContainsAny(v, " \t\r\n@"):
		return fmt.Errorf("version %q contains white space or @: pick a version such as 1.4.2", v)
	}
	return nil
}

// describeAdoptee reads AMI r and checks that it can be adopted as
// version: it is in r's region, this account owns it, it is available,
// and it is no version of anything yet, or this version of the store's
// artifact (an earlier run of the same adoption; checkVersionFree
// looks further).
func (s *LifecycleStore) describeAdoptee(ctx context.Context, r RegionAMI, version string) (*located, error) {
	c := s.client(r.Region)
	// Owners with an image-id filter rather than ImageIds: moto 5.2.5
	// ignores Owners when ImageIds are given (EC2 does not), and answers
	// both with a filter as EC2 does.
	out, err := c.DescribeImages(ctx, &ec2.DescribeImagesInput{Owners: []string{"self"},
		Filters: []ec2types.Filter{{Name: aws.String("image-id"), Values: []string{r.ImageID}}}})
	if err != nil && !awsx.IsNotFound(err) {
		return nil, fmt.Errorf("reading AMI %s in %s: %w", r.ImageID, r.Region, awsx.ExplainError(err))
	}
	if err != nil || len(out.Images) == 0 {
		// Not this account's: someone else's, or not there at all.
		other, err := c.DescribeImages(ctx, &ec2.DescribeImagesInput{ImageIds: []string{r.ImageID}})
		if err != nil && !awsx.IsNotFound(err) {
			return nil, fmt.Errorf("reading AMI %s in %s: %w", r.ImageID, r.Region, awsx.ExplainError(err))
		}
		if err == nil && len(other.Images) > 0 {
			return nil, fmt.Errorf("AMI %s in %s belongs to account %s, not to this one: bakery can adopt only its own AMIs (it tags them); copy it into this account (aws ec2 copy-image) and adopt the copy, or run adopt with that account's credentials",
				r.ImageID, r.Region, aws.ToString(other.Images[0].OwnerId))
		}
		return nil, fmt.Errorf("AMI %s does not exist in %s: check the id and the region (it may be in another region: write REGION:AMI-ID)", r.ImageID, r.Region)
	}
	img := FromEC2(r.Region, out.Images[0])
	if img.State != string(ec2types.ImageStateAvailable) {
		return nil, fmt.Errorf("AMI %s in %s is %s%s, not available: adopt it once it is available", r.ImageID, r.Region, img.State, img.stateReason())
	}
	if rec, ver, art := img.Tags[catalog.TagRecipe], img.Tags[catalog.TagVersion], img.Tags[catalog.TagArtifact]; rec != "" || ver != "" || art != "" {
		if rec != s.recipe || art != s.artifact || ver != version {
			return nil, fmt.Errorf("AMI %s in %s is already %s@%s (%s) in bakery's catalog: an AMI is one version of one recipe; adopt another AMI, or retire that version first",
				r.ImageID, r.Region, cmp.Or(rec, "?"), cmp.Or(ver, "?"), cmp.Or(art, "?"))
		}
	}
	if id := img.Tags[catalog.TagBakeID]; id != "" && !catalog.Adopted(img.BakeKey) {
		return nil, fmt.Errorf("AMI %s in %s was made by bakery bake %s: it is bakery's own, not a Packer AMI; find it with bakery status, or remove leftovers with bakery sweep", r.ImageID, r.Region, id)
	}
	return &located{Image: img}, nil
}

// checkVersionFree refuses when version exists already as anything but
// this adoption: an AMI of the recipe at version (of any of its
// machine_image blocks) that is not one of ls, or one of ls that bakery
// baked.
func (s *LifecycleStore) checkVersionFree(ctx context.Context, version string, ls []*located) error {
	regions, err := s.lookIn(ctx)
	if err != nil {
		return err
	}
	for _, l := range ls {
		regions = dedupe(append(regions, l.Region))
	}
	// Any artifact of the recipe: a version is all of them.
	found, err := s.find.Find(ctx, regions, Query{Recipe: s.recipe, Version: version, Unfinished: true})
	if err != nil {
		return err
	}
	for _, img := range found {
		ours := img.Artifact == s.artifact && slices.ContainsFunc(ls, func(l *located) bool { return l.Region == img.Region && l.ImageID == img.ImageID })
		if !ours || (img.BakeKey != "" && !catalog.Adopted(img.BakeKey)) {
			how := "baked"
			if catalog.Adopted(img.BakeKey) {
				how = "adopted"
			}
			of := ""
			if img.Artifact != s.artifact {
				of = " of machine_image " + img.Artifact
			}
			return fmt.Errorf("%s exists already (%s AMI %s%s in %s): a version is immutable; adopt these AMIs as another --version", s.ref(version), how, img.ImageID, of, img.Region)
		}
	}
	return nil
}

// planAdoption returns what to write on l and its snapshots so that they
// carry want, after checking every tag against EC2's limits and the
// room the recipe's stages and history need.
func planAdoption(l *located, want map[string]string, stages int) (*adoptee, error) {
	for k, v := range want {
		if err := checkTag(k, v); err != nil {
			return nil, fmt.Errorf("AMI %s in %s: %w", l.ImageID, l.Region, err)
		}
	}
	ad := &adoptee{located: *l, tags: diffTags(l.Tags, want), snapTags: map[string]map[string]string{}}
	room := stages + catalog.AMIRevokedTags + catalog.AMIReservedTags + catalog.MinAMIEvents
	if n := countTags(l.Tags, want); n+room > MaxTags {
		return nil, fmt.Errorf("AMI %s in %s would carry %d tags (%d of its own and bakery's), and needs room for %d more (stage marks, a revocation, history) under EC2's limit of %d: remove some of its own tags (aws ec2 delete-tags) and run adopt again",
			l.ImageID, l.Region, n, n, room, MaxTags)
	}
	for _, id := range l.Snapshots {
		have := l.snaps[id]
		if n := countTags(have, want); n+stages+catalog.AMIRevokedTags > MaxTags {
			return nil, fmt.Errorf("snapshot %s of AMI %s in %s would carry %d tags, with no room for the stage marks of %d stages under EC2's limit of %d: remove some of its own tags and run adopt again",
				id, l.ImageID, l.Region, n, stages, MaxTags)
		}
		if d := diffTags(have, want); len(d) > 0 {
			ad.snapTags[id] = d
		}
	}
	return ad, nil
}

// checkTag reports whether EC2 takes tag k=v.
func checkTag(k, v string) error {
	switch {
	case k == "" || !utf8.ValidString(k) || utf8.RuneCountInString(k) > maxKeyLen:
		return fmt.Errorf("tag key %q is empty, not UTF-8 or longer than %d characters", k, maxKeyLen)
	case strings.HasPrefix(strings.ToLower(k), "aws:"):
		return fmt.Errorf("tag key %q starts with aws:, which EC2 reserves", k)
	case !utf8.ValidString(v) || utf8.RuneCountInString(v) > MaxTagValue:
		return fmt.Errorf("the value of tag %s is not UTF-8 or longer than %d characters", k, MaxTagValue)
	}
	return nil
}

// diffTags returns the tags of want that have differs from.
func diffTags(have, want map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range want {
		if cur, ok := have[k]; !ok || cur != v {
			out[k] = v
		}
	}
	return out
}

// countTags is how many tags (not counting aws: ones) a resource tagged
// have carries once want is written.
func countTags(have, want map[string]string) int {
	n := len(want)
	for k := range have {
		if _, ok := want[k]; !ok && !strings.HasPrefix(k, "aws:") {
			n++
		}
	}
	return n
}

// undo is how to put one resource's tags back: the keys to delete (they
// were not there) and the values to write again (they were others).
type undo struct {
	region, id string
	delete     []string
	restore    map[string]string
}

// undoOf is how to take back writing add on a resource tagged have.
func undoOf(region, id string, have, add map[string]string) undo {
	u := undo{region: region, id: id, restore: map[string]string{}}
	for _, k := range slices.Sorted(maps.Keys(add)) {
		if v, ok := have[k]; ok {
			u.restore[k] = v
		} else {
			u.delete = append(u.delete, k)
		}
	}
	return u
}

// writeAdoption tags ad's snapshots, then its AMI, noting in done how to
// take each write back before it is made (a call whose answer was lost
// may have taken effect). It returns how many resources it tagged.
func (s *LifecycleStore) writeAdoption(ctx context.Context, ad *adoptee, done *[]undo) (int, error) {
	c := s.client(ad.Region)
	n := 0
	for _, id := range ad.Snapshots {
		add := ad.snapTags[id]
		if len(add) == 0 {
			continue
		}
		*done = append(*done, undoOf(ad.Region, id, ad.snaps[id], add))
		if _, err := c.CreateTags(ctx, &ec2.CreateTagsInput{Resources: []string{id}, Tags: EC2Tags(add)}); err != nil {
			return n, fmt.Errorf("tagging snapshot %s of AMI %s in %s: %w", id, ad.ImageID, ad.Region, awsx.ExplainError(err))
		}
		n++
	}
	if len(ad.tags) > 0 {
		*done = append(*done, undoOf(ad.Region, ad.ImageID, ad.Tags, ad.tags))
		if _, err := c.CreateTags(ctx, &ec2.CreateTagsInput{Resources: []string{ad.ImageID}, Tags: EC2Tags(ad.tags)}); err != nil {
			return n, fmt.Errorf("tagging AMI %s in %s: %w", ad.ImageID, ad.Region, awsx.ExplainError(err))
		}
		n++
	}
	// As EC2 now has it, so that Entries shows it at once (see remember).
	img := ad.Image
	img.Tags = maps.Clone(img.Tags)
	if img.Tags == nil {
		img.Tags = map[string]string{}
	}
	maps.Copy(img.Tags, ad.tags)
	img.Image = FromEC2(img.Region, ec2types.Image{ImageId: aws.String(img.ImageID), Tags: EC2Tags(img.Tags)}).Image
	s.remember(img)
	return n, nil
}

// rollbackTimeout bounds putting tags back after a failed adoption.
const rollbackTimeout = 2 * time.Minute

// rollback puts back, newest first, the tags done wrote, on a context of
// its own (the adoption's may be what ended). It tries every resource
// and returns the errors joined.
func (s *LifecycleStore) rollback(ctx context.Context, done []undo) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), rollbackTimeout)
	defer cancel()
	var errs []error
	for _, u := range slices.Backward(done) {
		c := s.client(u.region)
		if len(u.delete) > 0 {
			tags := make([]ec2types.Tag, len(u.delete))
			for i, k := range u.delete {
				tags[i] = ec2types.Tag{Key: aws.String(k)}
			}
			if _, err := c.DeleteTags(ctx, &ec2.DeleteTagsInput{Resources: []string{u.id}, Tags: tags}); err != nil {
				errs = append(errs, fmt.Errorf("untagging %s in %s: %w", u.id, u.region, awsx.ExplainError(err)))
			}
		}
		if len(u.restore) > 0 {
			if _, err := c.CreateTags(ctx, &ec2.CreateTagsInput{Resources: []string{u.id}, Tags: EC2Tags(u.restore)}); err != nil {
				errs = append(errs, fmt.Errorf("restoring the tags of %s in %s: %w", u.id, u.region, awsx.ExplainError(err)))
			}
		}
		if strings.HasPrefix(u.id, "ami-") {
			s.Forget(u.region, u.id)
		}
	}
	return errors.Join(errs...)
}

// amiList writes amis as REGION:AMI, comma separated.
func amiList(amis []RegionAMI) string {
	parts := make([]string, len(amis))
	for i, r := range amis {
		parts[i] = r.String()
	}
	return strings.Join(parts, ", ")
}
