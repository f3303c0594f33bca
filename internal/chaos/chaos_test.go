// Package chaos_test drives the whole lifecycle of a machine image —
// bake, promote through three stages, launch three versions, rollback,
// revoke, retire, sweep — with the real bakery binary, through a
// fault-injecting proxy in front of moto_server, while seeded dice send
// SIGINT and SIGKILL to the bakery process. After each scenario it checks
// the account directly (not through bakery) for leaks and unsafe
// deletions.
//
// It runs BAKERY_CHAOS_SEEDS seeds (default 2), or the one seed of
// -seed=N or BAKERY_CHAOS_SEED=N; a failing seed prints the command that
// replays it.
package chaos_test

import (
	"flag"
	"os"
	"testing"

	"github.com/bakery-sh/bakery/internal/mototest"
)

var seedFlag = flag.Uint64("seed", 0, "run this one chaos seed (0: BAKERY_CHAOS_SEED, else BAKERY_CHAOS_SEEDS seeds from 1)")

func TestMain(m *testing.M) { os.Exit(mototest.Run(m)) }
