package main

import (
	"flag"
	"fmt"
	"io"

	"github.com/tetherproxy/tether/config"
)

func cmdCheck(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	file := fs.String("c", "", "config `FILE` to validate")
	print := fs.Bool("print", false, "print the effective config (defaults filled, profiles resolved)")
	defaults := fs.Bool("print-defaults", false, "print the built-in defaults and exit")
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	if *defaults {
		out, err := config.Defaults()
		if err != nil {
			fmt.Fprintf(stderr, "tether: %v\n", err)
			return exitError
		}
		fmt.Fprint(stdout, out)
		return exitOK
	}
	if *file == "" || fs.NArg() > 0 {
		fmt.Fprintln(stderr, "usage: tether check -c FILE [--print] | tether check --print-defaults")
		return exitUsage
	}
	cfg, err := config.LoadFile(*file)
	if err != nil {
		fmt.Fprintf(stderr, "tether: invalid configuration:\n%v\n", err)
		return exitError
	}
	for _, w := range cfg.Warnings {
		fmt.Fprintf(stderr, "warning: %s\n", w)
	}
	if *print {
		out, err := config.Effective(cfg)
		if err != nil {
			fmt.Fprintf(stderr, "tether: %v\n", err)
			return exitError
		}
		fmt.Fprint(stdout, out)
		return exitOK
	}
	fmt.Fprintf(stdout, "%s: ok (%d virtual servers, %d pools, %d warnings)\n",
		*file, len(cfg.VirtualServers), len(cfg.Pools), len(cfg.Warnings))
	return exitOK
}
