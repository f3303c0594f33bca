package ami

import (
	"context"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"

	catalogami "github.com/bakery-sh/bakery/catalog/ami"
	"github.com/bakery-sh/bakery/internal/awsx"
	"github.com/bakery-sh/bakery/internal/progress"
)

// keyPairStep imports the public half of the SSH key (a fresh in-memory
// ed25519 key, or ssh_private_key_file's) as a temporary key pair named
// after the bake. Only bakes with provisioners have it.
type keyPairStep struct{}

func (keyPairStep) Name() string { return "create temporary key pair" }

func (keyPairStep) Run(ctx context.Context, st *bakeState, _ progress.Step) error {
	m := st.m
	var err error
	if m.SSHPrivateKeyFile != "" {
		st.key, err = LoadSSHKey(m.SSHPrivateKeyFile)
		if err != nil {
			return fmt.Errorf("%s: loading SSH key %s: %w", m.Pos("ssh_private_key_file"), m.SSHPrivateKeyFile, err)
		}
	} else if st.key, err = NewSSHKey(); err != nil {
		return fmt.Errorf("generating an SSH key: %w", err)
	}
	region := st.plan.BuildRegion
	// The name is recorded before the call: it is this bake's alone, so a
	// lost answer still leaves cleanup something to delete.
	st.keyName = "bakery-" + st.bakeID
	out, err := st.b.clients.EC2(region).ImportKeyPair(ctx, &ec2.ImportKeyPairInput{
		KeyName:           aws.String(st.keyName),
		PublicKeyMaterial: st.key.PublicAuthorized,
		TagSpecifications: catalogami.TagSpecs(st.baseTags(), ec2types.ResourceTypeKeyPair),
	})
	if awsx.ErrorCode(err) == "InvalidKeyPair.Duplicate" {
		// The name is this bake's alone: an earlier try of this call took
		// effect and its answer was lost, and the SDK tried again. The
		// key pair is ours (its id stays unknown; cleanup goes by name).
		return nil
	}
	if err != nil {
		return fmt.Errorf("importing key pair %s in %s: %w", st.keyName, region, awsx.ExplainError(err))
	}
	st.mu.Lock()
	st.keyPairID = aws.ToString(out.KeyPairId)
	st.mu.Unlock()
	return nil
}

func (keyPairStep) Cleanup(ctx context.Context, st *bakeState, failed bool) error {
	if st.keyName == "" || st.keep(failed) {
		return nil
	}
	return st.b.deleteKeyPair(ctx, st.plan.BuildRegion, st.keyName)
}
