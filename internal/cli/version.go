package cli

import (
	"encoding/json"
	"fmt"
	"runtime"
	"runtime/debug"

	ucli "github.com/urfave/cli/v2"
)

func versionCommand(e *env) *ucli.Command {
	return withUsageErrors(&ucli.Command{
		Name:  "version",
		Usage: "print bakery's version",
		Action: func(c *ucli.Context) error {
			g, err := readGlobals(c)
			if err != nil {
				return err
			}
			info := map[string]string{"version": Version, "go": runtime.Version(), "platform": runtime.GOOS + "/" + runtime.GOARCH}
			if bi, ok := debug.ReadBuildInfo(); ok {
				for _, s := range bi.Settings {
					if s.Key == "vcs.revision" {
						info["commit"] = s.Value
					}
				}
				if Version == "dev" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
					info["version"] = bi.Main.Version
				}
			}
			if g.json {
				return json.NewEncoder(e.stdout).Encode(info)
			}
			fmt.Fprintf(e.stdout, "bakery %s (%s, %s)\n", info["version"], info["go"], info["platform"])
			return nil
		},
	})
}
