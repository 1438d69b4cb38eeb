package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/urfave/cli/v2"

	"roam/api"
)

func main() {
	os.Exit(run(os.Args, os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	app, x := newApp(stdout, stderr)
	err := app.Run(reorder(app, args))
	if err == nil {
		err = x.notFound
	}
	if err == nil {
		return 0
	}
	report(app, args, err, stdout, stderr)
	return 1
}

// report prints err: as {"error": ...} on stdout in json mode, as
// "roamctl: CODE: message" on stderr otherwise.
func report(app *cli.App, args []string, err error, stdout, stderr io.Writer) {
	var e *api.Error
	if !errors.As(err, &e) {
		code := api.CodeInvalidParameter
		var ce connError
		if errors.As(err, &ce) {
			code = "ConnectionFailed"
		}
		e = &api.Error{Code: code, Message: err.Error()}
	}
	if jsonMode(args) {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		enc.Encode(api.ErrorBody{Error: e})
		return
	}
	fmt.Fprintf(stderr, "roamctl: %s: %s\n", e.Code, e.Message)
}

// jsonMode finds --output json among the global flags, even when parsing
// failed before they were read.
func jsonMode(args []string) bool {
	for i, a := range args {
		switch a {
		case "--output=json", "-output=json", "-o=json", "--output=JSON":
			return true
		case "--output", "-output", "-o":
			if i+1 < len(args) && args[i+1] == "json" {
				return true
			}
		}
	}
	return os.Getenv("ROAM_OUTPUT") == "json"
}

type connError struct{ err error }

func (c connError) Error() string { return c.err.Error() }
func (c connError) Unwrap() error { return c.err }

// reorder moves the flags of the leaf command before its positional
// arguments, so that "roamctl eni attach ENI-ID --instance vm1" works:
// urfave/cli v2 stops parsing flags at the first positional argument.
func reorder(app *cli.App, args []string) []string {
	if len(args) < 2 {
		return args
	}
	out := []string{args[0]}
	i := 1
	flags := app.Flags
	skipFlags := func() {
		for i < len(args) && strings.HasPrefix(args[i], "-") && args[i] != "--" {
			out = append(out, args[i])
			if takesValue(flags, args[i]) && i+1 < len(args) {
				out = append(out, args[i+1])
				i++
			}
			i++
		}
	}
	skipFlags()
	cmds := app.Commands
	var leaf *cli.Command
	for i < len(args) {
		var next *cli.Command
		for _, c := range cmds {
			if c.HasName(args[i]) {
				next = c
			}
		}
		if next == nil {
			break
		}
		leaf, cmds, flags = next, next.Subcommands, next.Flags
		out = append(out, args[i])
		i++
		skipFlags()
	}
	if leaf == nil {
		return args
	}
	var fl, pos []string
	for ; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--":
			pos = append(pos, args[i+1:]...)
			i = len(args)
		case strings.HasPrefix(a, "-") && len(a) > 1:
			fl = append(fl, a)
			if takesValue(flags, a) && i+1 < len(args) {
				fl = append(fl, args[i+1])
				i++
			}
		default:
			pos = append(pos, a)
		}
	}
	out = append(out, fl...)
	return append(out, pos...)
}

// takesValue reports whether the flag arg (as written) consumes the next
// argument.
func takesValue(flags []cli.Flag, arg string) bool {
	name := strings.TrimLeft(arg, "-")
	if strings.Contains(name, "=") {
		return false
	}
	for _, f := range flags {
		for _, n := range f.Names() {
			if n == name {
				_, isBool := f.(*cli.BoolFlag)
				return !isBool
			}
		}
	}
	return false
}
