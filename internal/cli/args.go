package cli

import (
	"strings"

	ucli "github.com/urfave/cli/v2"
)

// interspersed moves a command's flags in front of its arguments, so that
// "bakery promote web@1.4.2 --to prod" works as people type it
// (urfave/cli/v2 stops reading flags at the first argument). A flag's
// value moves with it; "--" ends the flags as usual.
func interspersed(app *ucli.App, args []string) []string {
	if len(args) < 2 {
		return args
	}
	// Skip the global flags to find the command.
	i := 1
	for i < len(args) && strings.HasPrefix(args[i], "-") && args[i] != "--" {
		if takesValue(app.Flags, args[i]) {
			i++
		}
		i++
	}
	if i >= len(args) {
		return args
	}
	cmd := app.Command(args[i])
	if cmd == nil {
		return args
	}
	var flags, rest []string
	j := i + 1
	for ; j < len(args); j++ {
		a := args[j]
		if a == "--" {
			break
		}
		if strings.HasPrefix(a, "-") && len(a) > 1 {
			flags = append(flags, a)
			if takesValue(cmd.Flags, a) && j+1 < len(args) {
				j++
				flags = append(flags, args[j])
			}
			continue
		}
		rest = append(rest, a)
	}
	out := append([]string{}, args[:i+1]...)
	out = append(out, flags...)
	if j < len(args) {
		// Keep "--" and everything after it as arguments.
		return append(append(out, args[j:]...), rest...)
	}
	return append(out, rest...)
}

// takesValue reports whether the flag token names a flag that needs a
// separate value ("--to prod", not "--to=prod" or a bool).
func takesValue(flags []ucli.Flag, token string) bool {
	if strings.Contains(token, "=") {
		return false
	}
	name := strings.TrimLeft(token, "-")
	for _, f := range flags {
		for _, n := range f.Names() {
			if n != name {
				continue
			}
			if dv, ok := f.(ucli.DocGenerationFlag); ok {
				return dv.TakesValue()
			}
			_, isBool := f.(*ucli.BoolFlag)
			return !isBool
		}
	}
	return false
}
