package oci

import (
	"testing"

	"github.com/bakery-sh/bakery/internal/distributiontest"
)

// startDistribution starts a Docker Distribution registry (see
// distributiontest.Start) and returns its host:port.
func startDistribution(t *testing.T, deletes bool) string {
	t.Helper()
	return distributiontest.Start(t, deletes)
}
