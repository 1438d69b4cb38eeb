package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os/user"
	"strconv"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"roam/api"
)

type ctl struct {
	out      io.Writer
	socket   string
	json     bool
	client   *api.Client
	notFound error
}

func newApp(stdout, stderr io.Writer) (*cli.App, *ctl) {
	x := &ctl{out: stdout}
	app := &cli.App{
		Name:                 "roamctl",
		Usage:                "manage roam's interface records, instances, security groups and public IPs",
		EnableBashCompletion: true,
		Writer:               stdout,
		ErrWriter:            stderr,
		HideHelpCommand:      false,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "socket", Value: "/run/roam/roamd.sock", EnvVars: []string{"ROAM_SOCKET"}, Usage: "roamd's control socket"},
			&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Value: "table", EnvVars: []string{"ROAM_OUTPUT"}, Usage: "table or json"},
		},
		Before: func(c *cli.Context) error {
			switch c.String("output") {
			case "table":
			case "json":
				x.json = true
			default:
				return fmt.Errorf("--output %q: want table or json", c.String("output"))
			}
			x.socket = c.String("socket")
			x.client = api.NewClient(x.socket)
			return nil
		},
		Commands: []*cli.Command{
			x.subnetCmd(), x.sgCmd(), x.instanceCmd(), x.eniCmd(), x.ipCmd(), x.eipCmd(),
			x.conntrackCmd(), x.statsCmd(), x.captureCmd(), x.eventsCmd(), completionCmd(),
		},
		OnUsageError:   func(c *cli.Context, err error, isSub bool) error { return err },
		ExitErrHandler: func(c *cli.Context, err error) {},
	}
	app.CommandNotFound = func(c *cli.Context, name string) {
		x.notFound = fmt.Errorf("unknown command %q (see roamctl --help)", name)
	}
	groupActions(app.Commands)
	return app, x
}

// groupActions makes a command that only groups subcommands refuse an
// unknown subcommand by name instead of printing help and succeeding.
func groupActions(cmds []*cli.Command) {
	for _, c := range cmds {
		if len(c.Subcommands) == 0 {
			continue
		}
		groupActions(c.Subcommands)
		if c.Action == nil {
			c.Action = func(c *cli.Context) error {
				if c.NArg() > 0 {
					return fmt.Errorf("unknown command %q for %s (see %s --help)", c.Args().First(), c.Command.HelpName, c.Command.HelpName)
				}
				return cli.ShowSubcommandHelp(c)
			}
		}
	}
}

func (x *ctl) do(method, path string, in, out any) error {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	err := x.client.Do(ctx, method, path, in, out)
	var e *api.Error
	if err != nil && !errors.As(err, &e) {
		return connError{fmt.Errorf("cannot reach roamd at %s: %w", x.socket, unwrapAll(err))}
	}
	return err
}

func unwrapAll(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// show prints v as JSON or as a table.
func (x *ctl) show(v any) error {
	if x.json {
		enc := json.NewEncoder(x.out)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	}
	printTable(x.out, v)
	return nil
}

// call runs one API call and prints its answer, decoded as T.
func call[T any](x *ctl, method, path string, in any) error {
	var out T
	if err := x.do(method, path, in, &out); err != nil {
		return err
	}
	return x.show(out)
}

func arg(c *cli.Context, i int, name string) (string, error) {
	if c.NArg() <= i || c.Args().Get(i) == "" {
		return "", fmt.Errorf("missing argument %s (see %s --help)", name, c.Command.HelpName)
	}
	return c.Args().Get(i), nil
}

func exactArgs(c *cli.Context, n int, names ...string) ([]string, error) {
	if c.NArg() > n {
		return nil, fmt.Errorf("unexpected argument %q (see %s --help)", c.Args().Get(n), c.Command.HelpName)
	}
	out := make([]string, n)
	for i := 0; i < n; i++ {
		v, err := arg(c, i, names[i])
		if err != nil {
			return nil, err
		}
		out[i] = v
	}
	return out, nil
}

func tags(list []string) (map[string]string, error) {
	if len(list) == 0 {
		return nil, nil
	}
	m := map[string]string{}
	for _, t := range list {
		k, v, ok := strings.Cut(t, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("--tag %q: want KEY=VALUE", t)
		}
		m[k] = v
	}
	return m, nil
}

func optInt(c *cli.Context, name string) *int {
	if !c.IsSet(name) {
		return nil
	}
	v := c.Int(name)
	return &v
}

// uidOf resolves --uid or --user.
func uidOf(c *cli.Context) (uint32, error) {
	switch {
	case c.IsSet("uid") && c.IsSet("user"):
		return 0, errors.New("give --uid or --user, not both")
	case c.IsSet("uid"):
		return uint32(c.Uint("uid")), nil
	case c.IsSet("user"):
		name := c.String("user")
		if n, err := strconv.ParseUint(name, 10, 32); err == nil {
			return uint32(n), nil
		}
		u, err := user.Lookup(name)
		if err != nil {
			return 0, fmt.Errorf("--user %q: %v", name, err)
		}
		n, _ := strconv.ParseUint(u.Uid, 10, 32)
		return uint32(n), nil
	}
	return 0, errors.New("missing --uid or --user")
}

func portRange(s string) (*int, *int, error) {
	if s == "" {
		return nil, nil, nil
	}
	from, to, hasTo := strings.Cut(s, "-")
	if strings.HasPrefix(s, "-1") {
		from, to, hasTo = "-1", strings.TrimPrefix(strings.TrimPrefix(s, "-1"), "-"), strings.HasPrefix(s, "-1-")
	}
	f, err := strconv.Atoi(from)
	if err != nil {
		return nil, nil, fmt.Errorf("--port %q: want N or N-M", s)
	}
	if !hasTo {
		return &f, &f, nil
	}
	t, err := strconv.Atoi(to)
	if err != nil {
		return nil, nil, fmt.Errorf("--port %q: want N or N-M", s)
	}
	return &f, &t, nil
}

func completionCmd() *cli.Command {
	return &cli.Command{
		Name:  "completion",
		Usage: "print a shell completion script (bash or zsh): source <(roamctl completion bash)",
		Action: func(c *cli.Context) error {
			shell := c.Args().First()
			if shell == "" {
				shell = "bash"
			}
			script, ok := completionScripts[shell]
			if !ok {
				return fmt.Errorf("completion %q: want bash or zsh", shell)
			}
			fmt.Fprint(c.App.Writer, script)
			return nil
		},
	}
}

var completionScripts = map[string]string{
	"bash": `_roamctl_complete() {
  local cur opts
  COMPREPLY=()
  cur="${COMP_WORDS[COMP_CWORD]}"
  opts=$("${COMP_WORDS[0]}" "${COMP_WORDS[@]:1:$COMP_CWORD-1}" --generate-bash-completion 2>/dev/null)
  COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
  return 0
}
complete -o default -F _roamctl_complete roamctl
`,
	"zsh": `#compdef roamctl
_roamctl() {
  local -a opts
  opts=("${(@f)$(${words[1]} ${words[@]:1:#words[@]-2} --generate-bash-completion 2>/dev/null)}")
  _describe 'values' opts
}
compdef _roamctl roamctl
`,
}
