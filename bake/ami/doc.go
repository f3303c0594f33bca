// Package ami bakes AWS machine images the way Packer's amazon-ebs builder
// does, as a readable list of steps (internal/steps), each with Run and
// Cleanup over typed state: resolve the network, import a temporary key
// pair and open a temporary security group (only when the recipe has
// provisioners), launch a builder instance from the source AMI, provision
// it over SSH, stop it, create the AMI, tag it and its snapshots with the
// catalog metadata, copy it to the other regions, share it, and finally
// write the bake key, which marks the AMI complete.
//
// Nothing leaks (DESIGN.md, principle 3). Every resource carries the bake's
// bakery:bake-id tag from the moment it exists and is recorded in state
// the moment AWS returns its id; on failure, interruption or timeout the
// cleanups run in reverse order on a fresh context and remove it, finding
// by tag (and by name) what a lost response did not tell. Sweep finds and
// removes what a killed process left behind.
//
// Skipping (principle 4): Prepare computes the bake key from the canonical
// recipe, the resolved source AMI id and the content of every provisioner
// input; Existing reads the AMIs of the same version from the catalog on
// the AMIs' own tags (catalog/ami).
package ami
